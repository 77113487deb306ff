//! The fixture notebooks of `tests/fixtures`: good ones survive import and export unchanged in
//! content (nbformat itself checks them in `tests/python`); malformed ones fail with an error that
//! names the JSON path of the problem.

use std::collections::BTreeMap;
use std::fs;

use inloop_doc::Notebook;

#[test]
fn every_fixture_round_trips_and_export_is_stable() {
    let mut checked = 0;
    for entry in fs::read_dir(crate::fixtures_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "ipynb") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let notebook =
            Notebook::from_ipynb(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let exported = notebook.to_ipynb();
        let replica = Notebook::from_update_v1(&notebook.encode_update_v1()).unwrap();
        assert_eq!(
            replica.to_ipynb(),
            exported,
            "{}: a replica exports differently",
            path.display()
        );
        let again = Notebook::from_ipynb(&exported).unwrap().to_ipynb();
        assert_eq!(
            again,
            exported,
            "{}: export of the export differs",
            path.display()
        );
        checked += 1;
    }
    assert!(
        checked >= 12,
        "expected at least 12 fixtures, found {checked}"
    );
}

#[test]
fn malformed_notebooks_fail_with_an_error_naming_the_path() {
    let dir = crate::fixtures_dir().join("malformed");
    let expected: BTreeMap<String, String> =
        serde_json::from_str(&fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    assert!(
        expected.len() >= 10,
        "expected at least 10 malformed kinds, found {}",
        expected.len()
    );
    for (file, path) in expected {
        let err = Notebook::from_ipynb_bytes(&fs::read(dir.join(&file)).unwrap())
            .expect_err(&file)
            .to_string();
        assert!(
            err.starts_with(&format!("{path}: ")),
            "{file}: error {err:?} does not name {path}"
        );
        assert!(
            err.len() > path.len() + 10,
            "{file}: error {err:?} does not say what is wrong"
        );
    }
}
