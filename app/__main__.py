"""``python -m app``: launch the Tunesmith web UI (see app/app.py)."""

from app.app import main

main()
