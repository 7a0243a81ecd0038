"""The names of the files in a results folder (see the package docstring for the tree)."""

TRIALS = "trials.parquet"
EPOCHS = "epochs.parquet"
SWEEP_JSON = "sweep.json"
OPTUNA_DB = "optuna.db"  # `optuna-dashboard sqlite:///<results>/optuna.db`
CHECKPOINT_FILE = "checkpoint.pt"  # inside each Ray checkpoint_00000N/ folder of a trial
ANALYSIS_DIR = "analysis"
TSNE_PARQUET = "tsne.parquet"
TSNE_HTML = "tsne.html"
REPORT_HTML = "report.html"
BEST_TRIAL_JSON = "best_trial.json"
# The analysis's files in writing order: best_trial.json last, so a folder without it is an
# unfinished analysis.
ANALYSIS_FILES = (TSNE_PARQUET, TSNE_HTML, REPORT_HTML, BEST_TRIAL_JSON)
