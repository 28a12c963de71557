"""The content editors' part of the desk (the Redactie, role ``editor``; see docs/editor.md):
change facts and example questions, the not-understood inbox, gated publish and rollback.

* ``routes``    – the pages and JSON API (``/editor``, ``/api/editor``)
* ``service``   – what the pages do: facts, examples, inbox, publish and rollback jobs
* ``store``     – the editors' tables (inbox, jobs, models, the training lock)
* ``content``   – facts of ``content/*.yml`` as forms, checked by ``appcare.content``
* ``nlu``       – example questions in ``data/nlu/*.yml``, duplicate and similarity warnings
* ``yaml_edit`` – round-trip YAML: comments, order and quoting stay as they are
* ``inbox``     – not-understood citizen messages from the tracker store, masked
* ``messages``  – validation problems and fact changes in plain Dutch
* ``job``       – one publish job (validate, train, evaluate), run as a subprocess
* ``eval``      – evaluation of models on the held-out file and test stories (subprocess)

Nothing is imported here, so ``python -m desk.editor.job`` loads only what it needs.
"""
