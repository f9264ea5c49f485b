"""The schema's revisions, oldest first: 0001 is the first released schema (commit cc288f4)."""
