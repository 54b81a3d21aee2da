from davsync.cli import run

run()
