"""`tunesmith serve`: a finished run or export behind HTTP (FastAPI + uvicorn).

app.py (the FastAPI app), schemas.py (requests, caps, errors), batching.py (the dynamic batcher), predictor.py
(/v1/predict), generator.py (OpenAI-compatible completions), openai_format.py (response shapes), guard.py (API
key, body cap, stats, the last-resort 500), stats.py (/metrics), server.py (loading a run, running uvicorn).
"""
