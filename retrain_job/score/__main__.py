"""`python -m retrain_job.score`: the same command as `python -m retrain_job score`."""
import sys

from retrain_job.score.cli import main

sys.exit(main())
