"""InputFile / OutputFile: names, URLs, equality, pickling."""

import pathlib
import pickle

import pytest

from radical.asyncflow.data import InputFile, OutputFile


@pytest.mark.parametrize('cls', [InputFile, OutputFile])
def test_keeps_the_name_and_is_path_like(cls):
    f = cls('results/out.txt')
    assert f.filename == 'results/out.txt'
    assert f.basename == 'out.txt'
    assert str(f) == 'results/out.txt'
    assert pathlib.Path(f) == pathlib.Path('results/out.txt')
    assert not f.is_url


@pytest.mark.parametrize('cls', [InputFile, OutputFile])
def test_accepts_path_objects(cls, tmp_path):
    f = cls(tmp_path / 'a.dat')
    assert f.filename == str(tmp_path / 'a.dat')
    assert f.basename == 'a.dat'


@pytest.mark.parametrize('url, base', [
    ('http://example.org/data/in.csv', 'in.csv'),
    ('https://example.org/a/b/c.tar.gz?x=1', 'c.tar.gz'),
    ('ftp://ftp.example.org/pub/file.bin', 'file.bin'),
    ('file:///tmp/local.txt', 'local.txt'),
    ('s3://bucket/key/obj.json', 'obj.json'),
])
def test_urls_are_recognised(url, base):
    f = InputFile(url)
    assert f.is_url
    assert f.basename == base
    assert f.filename == url


@pytest.mark.parametrize('name', ['plain.txt', '/abs/path/x.txt', './rel/x.txt', 'C_drive.txt'])
def test_plain_paths_are_not_urls(name):
    assert not InputFile(name).is_url


@pytest.mark.parametrize('bad', [None, 3, b'bytes.txt', ['x.txt']])
def test_non_path_is_a_type_error(bad):
    with pytest.raises(TypeError):
        InputFile(bad)
    with pytest.raises(TypeError):
        OutputFile(bad)


def test_empty_name_is_a_value_error():
    with pytest.raises(ValueError):
        OutputFile('')


def test_equality_depends_on_kind_and_name():
    assert InputFile('x') == InputFile('x')
    assert hash(InputFile('x')) == hash(InputFile('x'))
    assert InputFile('x') != InputFile('y')
    assert InputFile('x') != OutputFile('x')
    assert len({InputFile('x'), InputFile('x'), OutputFile('x')}) == 2


@pytest.mark.parametrize('f', [InputFile('a/b.txt'), OutputFile('https://h/c.txt')])
def test_pickle_round_trip(f):
    g = pickle.loads(pickle.dumps(f))
    assert type(g) is type(f)
    assert g == f


def test_repr_names_kind_and_file():
    assert repr(InputFile('x.txt')) == "InputFile('x.txt')"
    assert repr(OutputFile('y.txt')) == "OutputFile('y.txt')"
