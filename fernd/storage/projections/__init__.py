"""Read models: one module each, holding the model, its projector and its
queries. Per-labour read models live in the labour's database; the two shared
ones live in the shared database."""
