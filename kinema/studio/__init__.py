"""kinema studio: a local web app over kinema's own functions (``kinema studio [RUNS_DIR]``).

* :mod:`kinema.studio.app` - the FastAPI app, the ``Studio`` state and request limits;
* :mod:`kinema.studio.jobs` - the one-at-a-time compute queue;
* :mod:`kinema.studio.trainer` - one ``kinema train`` subprocess at a time, stopped with SIGTERM;
* :mod:`kinema.studio.runs` - run folders: summaries, curves, samples, eval results;
* :mod:`kinema.studio.measures` - what Compare shows;
* :mod:`kinema.studio.paths` - confinement to RUNS_DIR and the data roots;
* ``page.html`` - the page (plain HTML/JS, plots drawn as inline SVG; nothing fetched from elsewhere).

Needs the ``studio`` extra (FastAPI, uvicorn): ``pip install "kinema[studio]"``.
"""
