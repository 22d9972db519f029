"""Text corpora: loading files, folders and zips, tokenising, vocabulary, bad input, storage."""
import zipfile

import numpy as np
import pytest

from engine.data import DATASET_KINDS, DataError, load_images
from engine.data.text import TextData, build_corpus, tokenize


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_tokenize_options():
    s = "The cat's hat, over-all: FINE!"
    assert tokenize(s) == ["the", "cat's", "hat", ",", "over-all", ":", "fine", "!"]
    assert tokenize(s, punctuation="strip") == ["the", "cat's", "hat", "over-all", "fine"]
    assert tokenize(s, lowercase=False, punctuation="keep") == ["The", "cat's", "hat,", "over-all:", "FINE!"]


def test_corpus_vocabulary_counts_and_split():
    sents = [f"a b c {i}" for i in range(50)] + ["a a b"]
    d = build_corpus("t", sents, min_count=2, heldout=0.1, seed=3)
    assert d.vocab[:3] == ["a", "b", "c"] and d.counts[:3].tolist() == [52, 51, 50]
    assert len(d.vocab) == 3                       # the numbers occur once: below min_count
    assert d.n == 51 and d.sentences[-1] == "a a b" and d.sentence_ids(50).tolist() == [0, 0, 1]
    assert d.n_tokens == 153 and d.offsets[-1] == 153
    assert int(d.split.sum()) == 5 and d.split.dtype == np.uint8
    again = build_corpus("t", sents, min_count=2, heldout=0.1, seed=3)
    assert np.array_equal(again.split, d.split) and again.fingerprint() == d.fingerprint()
    assert build_corpus("t", sents, max_vocab=2).vocab == ["a", "b"]
    st = d.stats()
    assert (st["n_tokens"], st["n_types"], st["n_sentences"]) == (153, 3, 51)
    assert st["sentence_length"]["max"] == 3 and st["n_types_raw"] == 53 and st["split"]["heldout"] == 5


def test_file_folder_and_zip(tmp_path):
    write(tmp_path / "one.txt", "Hello world.\n\nSecond line here\n".encode())
    d = load_images("text", path=tmp_path / "one.txt")
    assert isinstance(d, TextData) and d.sentences == ["Hello world.", "Second line here"]
    assert d.vocab[0] in ("hello", "world", ".", "second") and "Hello" not in d.vocab
    folder = tmp_path / "docs"
    folder.mkdir()
    write(folder / "b.txt", b"beta gamma\n")
    write(folder / "a.txt", "\ufeffalpha beta\n".encode())      # a BOM is fine
    write(folder / "bad.txt", b"caf\xe9\n")                      # one bad file of many is skipped
    d = load_images("text", path=folder)
    assert d.sentences == ["alpha beta", "beta gamma"] and d.vocab[0] == "beta"
    assert [name for name, _ in d.skipped] == ["bad.txt"] and "byte 3" in d.skipped[0][1]
    with zipfile.ZipFile(tmp_path / "c.zip", "w") as z:
        z.writestr("x/first.txt", "one two\n")
        z.writestr("x/second.txt", "two three\n")
        z.writestr("image.png", b"\x89PNG")
    d = load_images("text", path=tmp_path / "c.zip")
    assert d.sentences == ["one two", "two three"] and d.stats()["n_files"] == 2
    free = write(tmp_path / "free.txt", b"It was late. The jury\nsaid so! Then it ended.\n\nNew paragraph")
    d = load_images("text", path=free, unit="sentence")
    assert d.sentences == ["It was late.", "The jury said so!", "Then it ended.", "New paragraph"]


def test_bad_inputs_give_clear_errors(tmp_path):
    with pytest.raises(DataError, match="empty"):
        load_images("text", path=write(tmp_path / "empty.txt", b""))
    with pytest.raises(DataError, match=r"binary file.*byte 4"):
        load_images("text", path=write(tmp_path / "bin.txt", b"\x7fELF\x00\x01\x02"))
    bad = write(tmp_path / "latin.txt", "ok line\ncaf\xe9 cr\xe8me\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.txt: not valid UTF-8 at byte 11.*encoding=latin-1"):
        load_images("text", path=bad)
    assert load_images("text", path=bad, encoding="latin-1").vocab[-2:] == ["café", "crème"]
    giant = write(tmp_path / "giant.txt", b"word " * 30000)
    with pytest.raises(DataError, match=r"giant\.txt: line 1 is 149,999 characters long"):
        load_images("text", path=giant)
    with pytest.raises(DataError, match="no such file"):
        load_images("text", path=tmp_path / "missing.txt")
    with pytest.raises(DataError, match="no .txt files"):
        load_images("text", path=write(tmp_path / "e.zip", _empty_zip()))
    with pytest.raises(DataError, match="no word occurs"):
        load_images("text", path=write(tmp_path / "rare.txt", b"a b c\n"), min_count=2)
    with pytest.raises(DataError, match="required"):
        load_images("text")


def _empty_zip() -> bytes:
    import io
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("readme.md", "nothing")
    return buf.getvalue()


def test_shapes_captions_builtin():
    assert DATASET_KINDS["shapes-captions"].builtin and DATASET_KINDS["text"].modality == "text"
    d = load_images("shapes-captions", n=200)
    assert d.n == 200 and {"red", "circle", "small", "top"} <= set(d.vocab) and "," not in d.vocab
    assert load_images("shapes-captions", n=200).fingerprint() == d.fingerprint()


def test_stored_in_the_project_and_reloaded(project, tmp_path):
    from engine import workbench
    path = write(tmp_path / "c.txt", "\n".join(f"the cat sat on mat {i % 7}" for i in range(40)).encode())
    dataset_id, data = workbench.import_dataset(project, "text", "corpus", path=str(path), min_count=2)
    rec = project.dataset("corpus")
    assert rec.stats["n_tokens"] == data.n_tokens == 240 and rec.stats["modality"] == "text"
    workbench._CACHE.clear()
    path.unlink()                                  # the project keeps working without the file
    again = workbench.load_dataset(project, dataset_id)
    assert isinstance(again, TextData) and again.fingerprint() == data.fingerprint() == rec.fingerprint
    assert again.sentences == data.sentences and again.vocab == data.vocab
    assert np.array_equal(again.split, data.split)


def test_cli_adds_a_corpus(tmp_path, capsys):
    from engine.cli import main
    p = tmp_path / "p.pretext"
    assert main(["new", str(p), "--empty"]) == 0
    path = write(tmp_path / "brown.txt", b"a b c\nb c d\n")
    assert main(["datasets", "add", "--project", str(p), "text", f"path={path}"]) == 0, capsys.readouterr().err
    assert "2 sentences, 6 tokens, 4 words" in capsys.readouterr().out
    assert main(["datasets", "add", "--project", str(p), "text", f"path={tmp_path / 'nope.txt'}"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_heldout_sentences_come_in_runs_of_consecutive_sentences():
    from engine.data.text import HELDOUT_BLOCK, heldout_blocks
    split = heldout_blocks(1000, 0.1, seed=4)
    assert int(split.sum()) == 100
    blocks = split.reshape(-1, HELDOUT_BLOCK)
    assert set(blocks.sum(1)) == {0, HELDOUT_BLOCK}      # whole blocks: next-sentence pairs stay real
    assert np.array_equal(split, heldout_blocks(1000, 0.1, seed=4))
    assert not np.array_equal(split, heldout_blocks(1000, 0.1, seed=5))
    assert heldout_blocks(1, 0.5, seed=0).sum() == 0     # never everything


def test_text8_downloads_once_cuts_pieces_and_explains_no_internet(tmp_path):
    import zipfile
    from engine.data.text import load_text8
    words = " ".join(["anarchism originated as a term of abuse"] * 30)     # 210 words, one line
    source = tmp_path / "served.zip"
    with zipfile.ZipFile(source, "w") as z:
        z.writestr("text8", " " + words)
    root = tmp_path / "cache"
    data = load_text8(root, words_per_sentence=50, min_count=1, heldout=0.0, url=source.as_uri())
    assert (root / "text8.zip").is_file() and not (root / "text8.part").exists()
    assert [len(s.split()) for s in data.sentences] == [50, 50, 50, 50, 10]
    assert sorted(data.vocab) == sorted(set(words.split())) and set(data.counts) == {30}
    # Once there, the archive is read from the cache: the source may go away.
    source.unlink()
    assert load_text8(root, words_per_sentence=50, min_count=1, url=source.as_uri()).n_tokens == 210
    with pytest.raises(DataError, match="no internet connection"):
        load_text8(tmp_path / "empty", url="http://127.0.0.1:9/text8.zip")
    assert not (tmp_path / "empty" / "text8.part").exists()
