"""Running the workshop: the notebooks' server helper, stage snapshots, and the benchmark."""
