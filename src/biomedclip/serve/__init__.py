"""HTTP service (FastAPI on uvicorn) and the web page: classify, search and embed with one loaded model."""
