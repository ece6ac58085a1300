"""What a shell prompt shows: the segment format, its facts, and the files shells read."""
