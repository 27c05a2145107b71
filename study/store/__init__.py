"""The results store: ``format`` (a leaf: what the files are, read and written atomically) and ``store``
(the study folder that runs write into). Nothing is imported here, so reading a folder through ``format``
loads nothing else of the project."""
