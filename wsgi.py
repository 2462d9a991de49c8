"""The WSGI entry point for gunicorn: `gunicorn --preload wsgi:app` (settings come from PROOFUP_* variables)."""
from app import create_wsgi_app

app = create_wsgi_app()
