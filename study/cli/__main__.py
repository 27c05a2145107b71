from study.cli.app import app

app()
