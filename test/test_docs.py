"""The written reference cannot drift from the code: generated tables are current, links resolve."""

import re
from pathlib import Path

from rc_offline import docgen

REPO = Path(__file__).resolve().parent.parent


def test_parameter_reference_is_generated_from_the_declarations():
    current = docgen.DOC.read_text()
    assert current == docgen.render(), (
        'doc/parameters.md differs from the nodes\' ParamSpec declarations: run `make docs` '
        '(python -m rc_offline.docgen) and commit the result')


def test_every_declared_parameter_appears_in_the_reference():
    text = docgen.DOC.read_text()
    import importlib
    for node, module in docgen.NODES:
        section = text.split(f'## {node}\n', 1)[1].split('\n## ', 1)[0]
        for spec in importlib.import_module(module).PARAMS:
            assert f'| `{spec.name}` |' in section, f'{node}.{spec.name} missing from doc/parameters.md'


def test_relative_links_in_readme_and_doc_resolve():
    broken = []
    for page in [REPO / 'README.md', *sorted((REPO / 'doc').glob('*.md'))]:
        for target in re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', page.read_text()):
            if '://' in target or target.startswith('mailto:'):
                continue
            if not (page.parent / target).exists():
                broken.append(f'{page.relative_to(REPO)} -> {target}')
    assert not broken, 'broken links:\n' + '\n'.join(broken)
