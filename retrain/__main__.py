from retrain.cli import app

app(prog_name="retrain-ci")
