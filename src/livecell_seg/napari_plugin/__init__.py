"""napari plugin (``pip install livecell-seg[napari]``): a dock widget, a reader and sample data.

The npe2 manifest ``napari.yaml`` beside this file is registered through the ``napari.manifest``
entry point. napari, magicgui and Qt are imported only by the modules napari loads on demand
(``_widget``, ``_reader``, ``_sample_data``), never by the rest of livecell-seg.
"""
