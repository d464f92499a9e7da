"""The API reference site: it builds with warnings as errors (every
cross-reference resolves), its internal links and anchors exist, and in a
real headless browser (Debian's chromium) its maths renders offline.

Needs the docs extra (``pip install "fastopt[docs]"``) and chromium
(``apt-get install chromium``); CI installs both. A screenshot of the Adam
page is left at ``docs/_build/adam.png`` for a person to look at.
"""

from __future__ import annotations

import html.parser
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("sphinx", "numpydoc")),
    reason='the docs extra is not installed (pip install "fastopt[docs]")')


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless browser (apt-get install chromium)")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "html"
    result = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-n", "-q", "-b", "html", "docs", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"the docs build failed (warnings are errors):\n{result.stdout}{result.stderr}"
    return out


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.add(attributes["id"])
        for key in ("href", "src"):
            if attributes.get(key):
                self.links.append(attributes[key])


def _parse(text: str) -> _Links:
    parser = _Links()
    parser.feed(text)
    return parser


def _browser(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--virtual-time-budget=15000", *args], capture_output=True, text=True, timeout=120)


def test_every_optimizer_has_a_page(site):
    import fastopt

    for name in fastopt.OPTIMIZERS:
        assert (site / "optimizers" / f"{name}.html").exists(), name


def test_internal_links_and_anchors_resolve(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 15
    parsed = {page: _parse(page.read_text()) for page in pages}
    broken = []
    for page, links in parsed.items():
        for link in links.links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith("//"):
                continue  # external: not reachable offline, not this site's concern
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if not target.exists():
                broken.append(f"{page.relative_to(site)} -> {link}")
            elif parts.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else _parse(target.read_text()).ids
                if parts.fragment not in ids:
                    broken.append(f"{page.relative_to(site)} -> {link} (no such anchor)")
    assert not broken, "broken internal links:\n" + "\n".join(broken)


def test_no_page_loads_anything_from_the_network(site):
    for page in site.rglob("*.html"):
        for link in _parse(page.read_text()).links:
            if link.endswith(".js") or ".js?" in link:
                assert not urlsplit(link).scheme, f"{page.name} loads {link} from the network"


@pytest.mark.parametrize("page", ["optimizers/adam.html", "optimizers/lamb.html", "optimizers.html"])
def test_maths_renders_offline_in_a_browser(site, page):
    source = (site / page).read_text()
    formulas = source.count('class="math')
    assert formulas >= 1, f"{page} has no maths to render"
    dom = _browser("--dump-dom", (site / page).as_uri()).stdout
    assert dom.count("<mjx-container") >= formulas, f"MathJax did not render every formula on {page}"
    assert "<mjx-merror" not in dom, f"a formula on {page} has a TeX error"
    for raw in ("\\begin{split}", "\\leftarrow", "\\eta", "\\("):
        assert raw not in dom, f"raw TeX {raw} left on {page}"


def test_screenshot_of_the_adam_page(site):
    shot = ROOT / "docs" / "_build" / "adam.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.unlink(missing_ok=True)
    _browser("--window-size=1100,900", f"--screenshot={shot}", (site / "optimizers" / "adam.html").as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    image = pytest.importorskip("PIL.Image").open(shot).convert("L")
    dark = sum(image.histogram()[:128])
    assert dark > 0.005 * image.width * image.height, "the screenshot is (nearly) blank"
