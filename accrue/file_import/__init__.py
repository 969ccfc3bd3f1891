"""File import (F9): a CSV export, or a zip of them, from any CRM into the warehouse.

`propose` detects the file's encoding and dialect, proposes (or recalls) the mapping of
its headers to a common object's columns and type-checks every value; `import_file`
writes it through `Warehouse.apply` in pages that resume. Modules by concern: `reading`
(bytes to text rows), `values` (text to exact values), `mapping` (headers to columns),
`proposal` (what the admin sees, remembered mappings), `importer` (the reading of an
import as pages with checkpoints, and `import_file`, the command's write), `uploads` (files
uploaded in the concierge, stored in the warehouse), `feed` (the pipelines' "file" feed,
which imports them through the sync engine).
"""

from accrue.file_import.importer import ImportResult, import_file
from accrue.file_import.mapping import FileMapping
from accrue.file_import.proposal import Proposal, propose, remember_mapping
from accrue.file_import.reading import FileImportError
from accrue.file_import.values import ValueFormat

__all__ = [
    "FileImportError",
    "FileMapping",
    "ImportResult",
    "Proposal",
    "ValueFormat",
    "import_file",
    "propose",
    "remember_mapping",
]
