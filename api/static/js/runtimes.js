/**
 * The runtimes as the submit form shows them: what GET /runtimes lists, a short label for each
 * and a hello world in its language (the code field's placeholder and first content).
 */

const HELLO = {
  python: "print('Hello, World!')",
  "python-data": "import numpy as np\n\nprint('Hello, World!', np.arange(3) @ np.arange(3))",
  node: "console.log('Hello, World!');",
  c: '#include <stdio.h>\n\nint main(void) {\n    printf("Hello, World!\\n");\n    return 0;\n}\n',
  cpp: '#include <iostream>\n\nint main() {\n    std::cout << "Hello, World!\\n";\n}\n',
  bash: "echo 'Hello, World!'",
  java: "public class Main {\n    public static void main(String[] args) {\n"
    + '        System.out.println("Hello, World!");\n    }\n}\n',
};

export const DEFAULT_RUNTIME = "python";

// What the form offers before GET /runtimes answers, or if it cannot: the default runtime,
// which every host has.
export const FALLBACK = [{ name: "python", language: "Python", version: null, aliases: [],
  main_file: "main.py", compiled: false, packages: {} }];

/** The hello world of a runtime, by its name ("" for one this page does not know). */
export const helloOf = (name) => HELLO[name] ?? "";

/** Whether `code` is a hello world of any runtime: replacing it loses nothing. */
export const isHello = (code) => code.trim() === "" || Object.values(HELLO).includes(code);

/** "Python 3.11.2" from language "Python" and version "Python 3.11.2" (or "3.11.2"). */
export function shortVersion(runtime) {
  const number = /\d+(?:\.\d+)+/.exec(runtime.version ?? "");
  return number ? `${runtime.language} ${number[0]}` : runtime.language;
}

/** The option's text: "python-data · Python 3.11.2". */
export const optionText = (runtime) => `${runtime.name} · ${shortVersion(runtime)}`;

/** The line under the picker: main file, compile step, the version read, packages. */
export function describe(runtime) {
  const parts = [`main file ${runtime.main_file}`];
  if (runtime.compiled) parts.push("compiled first");
  if (runtime.version) parts.push(`version: ${runtime.version}`);
  const packages = Object.entries(runtime.packages ?? {});
  if (packages.length) parts.push(packages.map(([name, v]) => `${name} ${v}`).join(", "));
  if (runtime.aliases?.length) parts.push(`also called ${runtime.aliases.join(", ")}`);
  return parts.join(" · ");
}
