-- What SQLModel.metadata.create_all made at commit 30980c9, before taskyard had migrations:
-- Live output: controller streams container output into output_chunks, GET /tasks/
CREATE TABLE tasks (
	pk INTEGER NOT NULL,
	id VARCHAR NOT NULL,
	created_at DATETIME NOT NULL,
	resource_version INTEGER NOT NULL,
	task_type VARCHAR NOT NULL,
	code TEXT NOT NULL,
	cpu INTEGER NOT NULL,
	gpu INTEGER NOT NULL,
	ram VARCHAR NOT NULL,
	ram_bytes INTEGER NOT NULL,
	storage VARCHAR NOT NULL,
	storage_bytes INTEGER NOT NULL,
	timeout_seconds INTEGER NOT NULL,
	stdin TEXT,
	cancel_requested_at DATETIME,
	reset_requested_to VARCHAR,
	reset_requested_at DATETIME,
	phase VARCHAR NOT NULL,
	reason VARCHAR NOT NULL,
	message VARCHAR NOT NULL,
	result TEXT,
	exit_code INTEGER,
	stdout TEXT,
	stderr TEXT,
	stdout_truncated BOOLEAN NOT NULL,
	stderr_truncated BOOLEAN NOT NULL,
	assigned_cpus JSON NOT NULL,
	assigned_gpus JSON NOT NULL,
	attempt INTEGER NOT NULL,
	scheduled_at DATETIME,
	started_at DATETIME,
	finished_at DATETIME,
	deadline_at DATETIME,
	stuck_reason VARCHAR,
	stuck_since DATETIME,
	PRIMARY KEY (pk)
);
CREATE INDEX ix_tasks_phase_pk ON tasks (phase, pk);
CREATE UNIQUE INDEX ix_tasks_id ON tasks (id);
CREATE INDEX ix_tasks_reset_requested_to ON tasks (reset_requested_to);
CREATE TABLE transitions (
	seq INTEGER NOT NULL,
	task_id VARCHAR NOT NULL,
	from_phase VARCHAR,
	to_phase VARCHAR NOT NULL,
	reason VARCHAR NOT NULL,
	message VARCHAR NOT NULL,
	at DATETIME NOT NULL,
	resource_version INTEGER NOT NULL,
	PRIMARY KEY (seq)
);
CREATE INDEX ix_transitions_task_id ON transitions (task_id);
CREATE TABLE output_chunks (
	seq INTEGER NOT NULL,
	task_id VARCHAR NOT NULL,
	attempt INTEGER NOT NULL,
	stream VARCHAR NOT NULL,
	data BLOB NOT NULL,
	at DATETIME NOT NULL,
	PRIMARY KEY (seq)
);
CREATE INDEX ix_output_chunks_task_seq ON output_chunks (task_id, seq);
CREATE TABLE capacity (
	node VARCHAR NOT NULL,
	cpus_total INTEGER NOT NULL,
	cpu_ids JSON NOT NULL,
	ram_total INTEGER NOT NULL,
	ram_allocatable INTEGER NOT NULL,
	storage_total INTEGER NOT NULL,
	storage_allocatable INTEGER NOT NULL,
	gpu_ids JSON NOT NULL,
	gpu_names JSON NOT NULL,
	gpu_sharing INTEGER NOT NULL,
	allocated_cpus JSON NOT NULL,
	allocated_gpus JSON NOT NULL,
	allocated_ram INTEGER NOT NULL,
	allocated_storage INTEGER NOT NULL,
	runtime_ok BOOLEAN NOT NULL,
	runtime_message VARCHAR NOT NULL,
	heartbeat_at DATETIME,
	stats JSON NOT NULL,
	PRIMARY KEY (node)
);
CREATE TABLE meta (
	"key" VARCHAR NOT NULL,
	value INTEGER NOT NULL,
	PRIMARY KEY ("key")
);
