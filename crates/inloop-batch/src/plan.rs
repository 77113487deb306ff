//! From what the command line names (notebooks, parameter files and values, an output folder)
//! to the list of runs: one per notebook, or one per notebook and parameter set.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::params::{Param, Parameters};
use crate::{Error, Result};

/// The key of a parameter set that names its run (and output file) instead of its index; it is
/// not injected.
pub const NAME_KEY: &str = "_name";

/// Where executed notebooks are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputMode {
    /// `DIR/{stem}.ipynb`, or `DIR/{stem}-{index or _name}.ipynb` with parameter sets.
    Dir(PathBuf),
    /// Over the input notebook (one run per notebook only).
    InPlace,
}

/// Where the parameters come from. Later sources win: the files' mappings in order, then the
/// run's own set (a file holding a list), then `yaml`, then `values`.
#[derive(Clone, Debug, Default)]
pub struct ParameterSources {
    /// YAML files (`-f`). A mapping applies to every run; a list of mappings (at most one such
    /// file) makes one run of each notebook per entry.
    pub files: Vec<PathBuf>,
    /// YAML mappings given inline (`-y`).
    pub yaml: Vec<String>,
    /// `NAME=VALUE` pairs (`-p`), typed as papermill types them.
    pub values: Vec<String>,
}

/// One notebook to run, with its parameters and where its result goes.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSpec {
    pub input: PathBuf,
    pub output: PathBuf,
    /// How progress bars and the summary name it: the output's file stem.
    pub label: String,
    pub parameters: Parameters,
}

fn yaml_mapping_or_sets(text: &str, origin: &str) -> Result<YamlParams> {
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)
        .map_err(|e| Error::Parameters(format!("{origin} is not YAML: {e}")))?;
    match value {
        serde_yaml_ng::Value::Null => Ok(YamlParams::Common(Parameters::new())),
        serde_yaml_ng::Value::Mapping(map) => {
            Ok(YamlParams::Common(Parameters::from_yaml_mapping(&map)?))
        }
        serde_yaml_ng::Value::Sequence(items) => {
            let mut sets = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let Some(map) = item.as_mapping() else {
                    return Err(Error::Parameters(format!(
                        "{origin}: entry {i} of the list is not a mapping of parameters"
                    )));
                };
                let mut parameters = Parameters::from_yaml_mapping(map)?;
                let name = match parameters.remove(NAME_KEY) {
                    None => None,
                    Some(Param::Str(name)) => Some(name),
                    Some(Param::Int(n)) => Some(n.to_string()),
                    Some(other) => {
                        return Err(Error::Parameters(format!(
                            "{origin}: entry {i}'s {NAME_KEY} must be a string, not {other}"
                        )));
                    }
                };
                if let Some(name) = &name {
                    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
                        return Err(Error::Parameters(format!(
                            "{origin}: entry {i}'s {NAME_KEY} {name:?} cannot name a file"
                        )));
                    }
                }
                sets.push((name, parameters));
            }
            Ok(YamlParams::Sets(sets))
        }
        other => Err(Error::Parameters(format!(
            "{origin} must hold a mapping of parameters or a list of them, not {other:?}"
        ))),
    }
}

enum YamlParams {
    Common(Parameters),
    Sets(Vec<(Option<String>, Parameters)>),
}

/// The runs `notebooks` make with these parameters and output mode, in order: every parameter set
/// of the first notebook, then the second's, and so on.
pub fn plan(
    notebooks: &[PathBuf],
    sources: &ParameterSources,
    output: &OutputMode,
) -> Result<Vec<RunSpec>> {
    if notebooks.is_empty() {
        return Err(Error::Plan("no notebook to run".into()));
    }
    let mut common = Parameters::new();
    let mut sets: Option<Vec<(Option<String>, Parameters)>> = None;
    for file in &sources.files {
        let text = std::fs::read_to_string(file).map_err(|source| Error::Read {
            path: file.clone(),
            source,
        })?;
        match yaml_mapping_or_sets(&text, &file.display().to_string())? {
            YamlParams::Common(parameters) => common.extend(&parameters),
            YamlParams::Sets(list) => {
                if sets.is_some() {
                    return Err(Error::Parameters(
                        "only one parameter file may hold a list of parameter sets".into(),
                    ));
                }
                sets = Some(list);
            }
        }
    }
    let mut overrides = Parameters::new();
    for yaml in &sources.yaml {
        match yaml_mapping_or_sets(yaml, "-y")? {
            YamlParams::Common(parameters) => overrides.extend(&parameters),
            YamlParams::Sets(_) => {
                return Err(Error::Parameters(
                    "-y takes a mapping; put a list of parameter sets in a file for -f".into(),
                ));
            }
        }
    }
    for pair in &sources.values {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(Error::Parameters(format!(
                "-p {pair:?}: write it NAME=VALUE"
            )));
        };
        overrides.set(name.trim(), Param::from_cli(value))?;
    }

    let sets = sets.map(|list| {
        let width = list.len().saturating_sub(1).to_string().len();
        list.into_iter()
            .enumerate()
            .map(|(i, (name, params))| (name.unwrap_or_else(|| format!("{i:0width$}")), params))
            .collect::<Vec<_>>()
    });
    if output == &OutputMode::InPlace && sets.is_some() {
        return Err(Error::Plan(
            "--inplace writes one run per notebook; parameter sets need --output".into(),
        ));
    }
    let mut runs = Vec::new();
    for notebook in notebooks {
        let stem = notebook
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "notebook".into());
        let variants: Vec<(String, Parameters)> = match &sets {
            None => vec![(stem.clone(), Parameters::new())],
            Some(sets) => sets
                .iter()
                .map(|(suffix, params)| (format!("{stem}-{suffix}"), params.clone()))
                .collect(),
        };
        for (label, own) in variants {
            let mut parameters = common.clone();
            parameters.extend(&own);
            parameters.extend(&overrides);
            let output = match output {
                OutputMode::InPlace => notebook.clone(),
                OutputMode::Dir(dir) => dir.join(format!("{label}.ipynb")),
            };
            runs.push(RunSpec {
                input: notebook.clone(),
                output,
                label,
                parameters,
            });
        }
    }
    let mut seen = HashSet::new();
    for run in &runs {
        if !seen.insert(normalize(&run.output)) {
            return Err(Error::Plan(format!(
                "two runs would write {}: give the notebooks different names or run them apart",
                run.output.display()
            )));
        }
        if output != &OutputMode::InPlace && normalize(&run.output) == normalize(&run.input) {
            return Err(Error::Plan(format!(
                "the run of {} would overwrite it: use --inplace to mean that",
                run.input.display()
            )));
        }
    }
    Ok(runs)
}

fn normalize(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_sets_make_one_run_each_and_the_command_line_wins() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sets.yaml");
        std::fs::write(&file, "- {n: 1}\n- {n: 2, _name: two}\n- {n: 3, m: x}\n").unwrap();
        let common = dir.path().join("common.yaml");
        std::fs::write(&common, "m: base\nk: [1, 2]\n").unwrap();
        let sources = ParameterSources {
            files: vec![common, file],
            yaml: vec!["{z: 0.5}".into()],
            values: vec!["k=9".into()],
        };
        let out = OutputMode::Dir("out".into());
        let runs = plan(&["a/nb.ipynb".into()], &sources, &out).unwrap();
        let labels: Vec<_> = runs.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["nb-0", "nb-two", "nb-2"]);
        assert_eq!(runs[1].output, Path::new("out/nb-two.ipynb"));
        assert_eq!(
            runs[2].parameters.python_source(),
            "# Parameters\nm = \"x\"\nk = 9\nn = 3\nz = 0.5\n"
        );
        assert!(plan(&["a/nb.ipynb".into()], &sources, &OutputMode::InPlace).is_err());
        // Two notebooks with one stem would write one file.
        let twice = plan(
            &["a/nb.ipynb".into(), "b/nb.ipynb".into()],
            &ParameterSources::default(),
            &out,
        );
        assert!(
            twice
                .unwrap_err()
                .to_string()
                .contains("two runs would write")
        );
    }
}
