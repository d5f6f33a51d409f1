"""The eval suite needs nothing here: the plugin and its fixtures come with the package
(entry points ``mimicry`` and ``mimicry-fixtures``)."""
