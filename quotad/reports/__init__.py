"""The reports rendered (SPEC "Reports"): html from Jinja2 templates with inline SVG charts, pdf by headless
Chromium's print, xlsx with openpyxl. Outside the core: it reads files and runs a browser."""
