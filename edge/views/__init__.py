"""Everything that renders: terminal tables, job progress, and the HTML report.
The structured results are the truth; these are only views of them."""
