"""Turns the RESULT lines of sweep_panel.sh into a Markdown table: one row per teacher and
candidate, the student's test accuracy and the judge's agreement per seed, and their means.

    python3 bench/teachers/table.py sweep.log [more.log ...]
"""

import json
import re
import sys
from collections import defaultdict

runs = defaultdict(list)
for path in sys.argv[1:]:
    for line in open(path):
        m = re.match(r'RESULT (\S+):(\S+) (\{.*\}) student ([\d.]+)', line)
        if m:
            args = json.loads(m.group(3))
            runs[(m.group(1), m.group(2))].append(
                (args['seed'], float(m.group(4)), args.get('judge_agreement')))

print('| teacher | candidate | student (per seed) | mean | judge agreement (per seed) |')
print('|---|---|---|---|---|')
for (teacher, cand), rs in sorted(runs.items()):
    rs.sort()
    students = ' / '.join(f'{s * 100:.2f}' for _, s, _ in rs)
    judges = ' / '.join('–' if j is None else f'{j * 100:.1f}' for _, _, j in rs)
    mean = sum(s for _, s, _ in rs) / len(rs) * 100
    print(f'| {teacher} | {cand} | {students} | {mean:.2f} | {judges} |')
