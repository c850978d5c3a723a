#!/usr/bin/env bash
# The dataset gate's steps, one subcommand each, so that tests run exactly what the action runs.
# Inputs come as INPUT_* variables; results go where GitHub reads them ($GITHUB_OUTPUT, $GITHUB_STEP_SUMMARY).
# The baseline is a folder as dataset-gate.yml keeps it on main: audit.json (the audit) and report/ (the run's report).
set -euo pipefail

bottlenecks="${RUNNER_TEMP:-/tmp}/retrain-ci-bottlenecks"
# The converted backbone, where the action's cache restores and saves it.
export RETRAIN_CI_CACHE="${RUNNER_TEMP:-/tmp}/retrain-ci-modules"
output_dir="${INPUT_OUTPUT_DIR:-retrain-ci-run}"
audit_dir="$output_dir/audit"  # as `retrain-ci gate` lays its outputs out
baseline="${INPUT_BASELINE:-}"
# Empty inputs leave the executor to the settings file (else local).
executor=(${INPUT_EXECUTOR:+--executor "$INPUT_EXECUTOR"} ${INPUT_RAY_ADDRESS:+--ray-address "$INPUT_RAY_ADDRESS"})

case "${1:-}" in
  cache-keys)
    # What the caches are keyed by: the requirements (pip's wheels) and the converter's code (the converted backbone).
    root="$(dirname "${BASH_SOURCE[0]}")/../../.."
    digest() {
      cat "$@" | python -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])'
    }
    {
      echo "pip-dir=$(python -m pip cache dir)"
      echo "requirements=$(digest "$root/pyproject.toml")"
      echo "converter=$(digest "$root/pyproject.toml" "$root"/retrain/training/modules/*.py)"
    } >> "${GITHUB_OUTPUT:-/dev/null}"
    ;;
  gate)
    # `retrain-ci gate`: the audit (audit.json, audit.md and audit.html into the audit folder, annotations on the files)
    # and the run (its report), each gated, in one process. A fresh checkout's index holds the files written in its last
    # second as "racily clean": git would re-read them to vouch for their blob ids, on which the content keys rest (as
    # `git status` does, this refreshes the index once).
    git -C "$INPUT_DATA" update-index -q --refresh > /dev/null 2>&1 || true
    # No module named: the mode's default (efficientnet_lite0, or efficientnet_lite1 with fine-tune).
    args=(gate "$INPUT_DATA" --bottleneck-dir "$bottlenecks" --output-dir "$output_dir" --format github
      --fail-on "${INPUT_FAIL_ON:-error}" --export "${INPUT_EXPORT:-none}" --random-seed 0 "${executor[@]}")
    if [[ -n "${INPUT_MODULE:-}" ]]; then
      args+=(--tfhub-module "$INPUT_MODULE")
    fi
    if [[ "${INPUT_FINE_TUNE:-false}" == "true" ]]; then
      args+=(--fine-tune)
    fi
    if [[ -n "${INPUT_MIN_ACCURACY:-}" ]]; then
      args+=(--min-accuracy "$INPUT_MIN_ACCURACY")
    fi
    if [[ -n "$baseline" ]]; then  # each of its audit.json and report/ is used when it is there
      args+=(--baseline "$baseline" --max-regression "${INPUT_MAX_REGRESSION:-0.02}")
      if [[ "${INPUT_FAIL_ON_NEW:-true}" != "true" ]]; then
        args+=(--fail-on-all)
      fi
      if [[ -n "${INPUT_MAX_CLASS_REGRESSION:-}" ]]; then
        args+=(--max-class-regression "$INPUT_MAX_CLASS_REGRESSION")
      fi
    fi
    status=0
    retrain-ci "${args[@]}" || status=$?
    if [[ -f "$output_dir/report/metrics.json" ]]; then
      accuracy=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["test_accuracy"])' \
        "$output_dir/report/metrics.json")
      echo "test-accuracy=$accuracy" >> "${GITHUB_OUTPUT:-/dev/null}"
    fi
    exit "$status"
    ;;
  summary)
    # The run's summary, led by what the change did to the data (from the audit) and to the model; then the audit's.
    if [[ -f "$output_dir/report/summary.md" ]]; then
      cat "$output_dir/report/summary.md" >> "${GITHUB_STEP_SUMMARY:-/dev/null}"  # train wrote it with the audit
    fi
    if [[ -f "$audit_dir/audit.md" ]]; then
      cat "$audit_dir/audit.md" >> "${GITHUB_STEP_SUMMARY:-/dev/null}"
    fi
    ;;
  prune)
    # Drop cached bottlenecks and image properties of content no longer in the dataset, before the cache is saved.
    retrain-ci cache prune "$INPUT_DATA" --bottleneck-dir "$bottlenecks"
    ;;
  *)
    echo "usage: gate.sh cache-keys|gate|summary|prune" >&2
    exit 2
    ;;
esac
