from davsync.cli import app

app(prog_name="davsync")
