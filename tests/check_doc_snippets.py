#!/usr/bin/env python3
"""Compiles and runs every C code block in README.md and docs/*.md that is a
complete program (it defines main). Usage:
  check_doc_snippets.py SOURCE_ROOT STATIC_LIB CC [LINK_ARGS...]
Exits non-zero naming the file and block that failed."""
import glob, os, re, subprocess, sys, tempfile

root, lib, cc, link = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
files = [os.path.join(root, 'README.md')] + sorted(glob.glob(os.path.join(root, 'docs', '*.md')))
block = re.compile(r'```c\n(.*?)```', re.S)
checked = failed = 0
with tempfile.TemporaryDirectory() as tmp:
    for path in files:
        text = open(path, encoding='utf-8').read()
        for k, m in enumerate(block.finditer(text)):
            code = m.group(1)
            if not re.search(r'\bint\s+main\s*\(', code):
                continue
            line = text[:m.start()].count('\n') + 2
            where = f'{os.path.relpath(path, root)}:{line}'
            src = os.path.join(tmp, f'snippet{checked}.c')
            exe = src[:-2]
            open(src, 'w').write(code)
            checked += 1
            r = subprocess.run([cc, '-std=c11', '-Wall', '-Wextra', '-Werror', '-D_POSIX_C_SOURCE=200809L',
                                '-I', os.path.join(root, 'include'), src, lib, '-o', exe] + link,
                               capture_output=True, text=True)
            if r.returncode != 0:
                print(f'FAIL {where}: does not compile\n{r.stderr}')
                failed += 1
                continue
            r = subprocess.run([exe], capture_output=True, text=True, cwd=tmp, timeout=300)
            if r.returncode != 0:
                print(f'FAIL {where}: exit status {r.returncode}\n{r.stdout}{r.stderr}')
                failed += 1
                continue
            print(f'ok   {where}')
print(f'{checked - failed} passed, {failed} failed')
sys.exit(1 if failed or checked == 0 else 0)
