use inloop_kernel::{Error, InterruptMode, KernelSpec, SearchPath};

use crate::venv;

#[test]
fn the_venv_prefix_provides_python3() {
    let venv = venv();
    let search = SearchPath::from_env([&venv]);
    assert!(search.dirs().contains(&venv.join("share/jupyter")));

    let spec = KernelSpec::find("python3", &search).unwrap();
    assert_eq!(
        spec.resource_dir,
        venv.join("share/jupyter/kernels/python3")
    );
    assert_eq!(spec.language, "python");
    assert_eq!(spec.interrupt_mode, InterruptMode::Signal);
    assert!(spec.argv.contains(&"{connection_file}".to_owned()));
    assert!(
        KernelSpec::list(&search)
            .iter()
            .any(|listed| listed == &spec)
    );
}

#[test]
fn a_missing_kernel_names_the_directories_searched() {
    let venv = venv();
    let search = SearchPath::from_dirs([venv.join("share/jupyter"), venv.join("nowhere")]);
    let error = KernelSpec::find("no-such-kernel", &search).unwrap_err();
    assert!(matches!(error, Error::KernelSpecNotFound { .. }));
    let message = error.to_string();
    assert!(message.contains("found: python3"), "{message}");
    for dir in search.dirs() {
        assert!(message.contains(&dir.display().to_string()), "{message}");
    }
}
