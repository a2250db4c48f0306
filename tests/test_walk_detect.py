import os
import threading

from ibsearch.encoder.media.detect import AUDIO, IMAGE, TEXT, VIDEO, detect, sniff
from ibsearch.ingest.walk import WalkOptions, walk

PNG_HEAD = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24


def _paths(found):
    return [os.path.relpath(f.path) for f in found]


def test_walk_finds_regular_files_recursively_in_sorted_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "deep").mkdir()
    for rel in ["a.txt", "b/c.txt", "b/deep/d.txt"]:
        (tmp_path / rel).write_text("x")
    found = list(walk([str(tmp_path)]))
    assert [os.path.relpath(f.path, tmp_path) for f in found] == ["a.txt", "b/c.txt", "b/deep/d.txt"]
    assert all(f.st.st_size == 1 for f in found)


def test_walk_survives_a_symlink_loop_and_skips_a_fifo_without_hanging(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f.txt").write_text("x")
    os.symlink(tmp_path, tmp_path / "sub" / "loop")
    os.mkfifo(tmp_path / "pipe")
    result = []
    t = threading.Thread(target=lambda: result.extend(walk([str(tmp_path)])), daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "walk hung"
    assert [os.path.relpath(f.path, tmp_path) for f in result] == ["sub/f.txt"]


def test_walk_skips_hidden_files_unless_asked_and_honours_excludes(tmp_path):
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.txt").write_text("x")
    (tmp_path / ".dot.txt").write_text("x")
    (tmp_path / "keep.txt").write_text("x")
    (tmp_path / "skip.tmp").write_text("x")
    assert [os.path.basename(f.path) for f in walk([str(tmp_path)], WalkOptions(exclude=["*.tmp"]))] == [
        "keep.txt"
    ]
    names = sorted(os.path.basename(f.path) for f in walk([str(tmp_path)], WalkOptions(hidden=True)))
    assert names == [".dot.txt", "keep.txt", "skip.tmp", "x.txt"]


def test_walk_yields_non_utf8_names_that_reopen(tmp_path):
    raw = os.fsencode(str(tmp_path)) + b"/caf\xe9.txt"
    with open(raw, "wb") as fh:
        fh.write(b"hello")
    (found,) = list(walk([str(tmp_path)]))
    with open(found.path, "rb") as fh:
        assert fh.read() == b"hello"
    assert os.fsencode(found.path) == raw


def test_walk_recurses_into_a_directory_named_like_a_file(tmp_path):
    (tmp_path / "photo.jpg").mkdir()
    (tmp_path / "photo.jpg" / "inner.txt").write_text("x")
    assert [os.path.relpath(f.path, tmp_path) for f in walk([str(tmp_path)])] == ["photo.jpg/inner.txt"]


def test_sniff_recognises_common_signatures():
    assert sniff(b"\xff\xd8\xff\xe0" + b"\x00" * 8) == IMAGE
    assert sniff(PNG_HEAD) == IMAGE
    assert sniff(b"GIF89a" + b"\x00" * 8) == IMAGE
    assert sniff(b"RIFF\x00\x00\x00\x00WAVEfmt ") == AUDIO
    assert sniff(b"fLaC\x00\x00") == AUDIO
    assert sniff(b"ID3\x04\x00") == AUDIO
    # Containers that may hold pictures are video until their streams say otherwise (see probe).
    assert sniff(b"OggS\x00\x02") == VIDEO
    assert sniff(b"FLV\x01\x05") == VIDEO
    assert sniff((b"G" + b"\x00" * 187) * 3) == VIDEO  # MPEG-TS
    assert sniff(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11") == VIDEO  # ASF
    assert sniff(b"\x00\x00\x00\x20ftypM4A \x00") == AUDIO
    assert sniff(b"\x00\x00\x00\x20ftypisom\x00") == VIDEO
    assert sniff(b"\x1a\x45\xdf\xa3\x00") == VIDEO
    assert sniff(b"hello world") is None


def test_pictures_beyond_pillow_are_images_by_signature_or_name(tmp_path):
    files = {
        "photo.heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
        "photo.jxl": b"\xff\x0a\x00\x01",
        "container.jxl": b"\x00\x00\x00\x0cJXL \r\n\x87\n\x00",
        "scan.pam": b"P7\nWIDTH 1\nHEIGHT 1\nDEPTH 1\nMAXVAL 255\nENDHDR\n\x00",
        "plain.pgm": b"P2\n1 1\n255\n0\n",
        "canon.cr3": b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01",
        "nikon.nef": b"MM\x00*\x00\x00\x00\x08",
        "drawing.svg": b'<?xml version="1.0"?>\n<!-- a comment -->\n<svg xmlns="http://www.w3.org/2000/svg"/>',
        "drawing.svgz": b"\x1f\x8b\x08\x00",
        "unnamed": b"<svg xmlns='http://www.w3.org/2000/svg' width='4' height='4'/>",
    }
    for name, head in files.items():
        (tmp_path / name).write_bytes(head)
        assert detect(str(tmp_path / name)).kind == IMAGE, name
    page = b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><svg/></html>'
    (tmp_path / "page.xhtml").write_bytes(page)
    assert detect(str(tmp_path / "page.xhtml")).kind != IMAGE  # an XHTML page holding a drawing


def test_detect_trusts_content_and_reports_liars(tmp_path):
    (tmp_path / "notes.md").write_text("# a dog barking in the park\n")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("this is not a picture")
    (tmp_path / "noise.wav").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "real.mp3").write_bytes(PNG_HEAD)
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02\xff")
    (tmp_path / "other.xyz").write_bytes(b"\x00\x01")
    assert detect(str(tmp_path / "notes.md")).kind == TEXT
    assert detect(str(tmp_path / "notes.md")).modalities == ("text",)
    assert "empty" in (detect(str(tmp_path / "empty.jpg"), size=0).reason or "")
    assert "content is text" in (detect(str(tmp_path / "text.jpg")).reason or "")
    assert "not a known audio format" in (detect(str(tmp_path / "noise.wav")).reason or "")
    assert detect(str(tmp_path / "real.mp3")).kind == IMAGE
    assert detect(str(tmp_path / "binary.txt")).kind is None
    assert detect(str(tmp_path / "binary.txt")).reason is not None
    unrelated = detect(str(tmp_path / "other.xyz"))
    assert unrelated.kind is None and unrelated.reason is None
