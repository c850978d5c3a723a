#!/usr/bin/env bash
# The dataset gate's steps, one subcommand each, so that tests run exactly what the action runs.
# Inputs come as INPUT_* variables; results go where GitHub reads them ($GITHUB_OUTPUT, $GITHUB_STEP_SUMMARY).
set -euo pipefail

bottlenecks="${RUNNER_TEMP:-/tmp}/retrain-ci-bottlenecks"
check_summary="${RUNNER_TEMP:-/tmp}/retrain-ci-check.md"
output_dir="${INPUT_OUTPUT_DIR:-retrain-ci-run}"
# Empty inputs leave the executor to the settings file (else local).
executor=(${INPUT_EXECUTOR:+--executor "$INPUT_EXECUTOR"} ${INPUT_RAY_ADDRESS:+--ray-address "$INPUT_RAY_ADDRESS"})

case "${1:-}" in
  check)
    # Markdown for the job summary, then annotations on the files and the gate's exit code.
    retrain-ci check "$INPUT_DATA" --tfhub-module "${INPUT_MODULE:-efficientnet_lite0}" \
      --bottleneck-dir "$bottlenecks" "${executor[@]}" --format markdown --output "$check_summary" --fail-on never
    retrain-ci check "$INPUT_DATA" --tfhub-module "${INPUT_MODULE:-efficientnet_lite0}" \
      --bottleneck-dir "$bottlenecks" "${executor[@]}" --format github --fail-on "${INPUT_FAIL_ON:-error}"
    ;;
  train)
    # No module named: the mode's default (efficientnet_lite0, or efficientnet_lite1 with fine-tune).
    args=(train "$INPUT_DATA" --bottleneck-dir "$bottlenecks" --output-dir "$output_dir" --random-seed 0)
    args+=("${executor[@]}")
    if [[ -n "${INPUT_MODULE:-}" ]]; then
      args+=(--tfhub-module "$INPUT_MODULE")
    fi
    if [[ "${INPUT_FINE_TUNE:-false}" == "true" ]]; then
      args+=(--fine-tune)
    fi
    if [[ -n "${INPUT_MIN_ACCURACY:-}" ]]; then
      args+=(--min-accuracy "$INPUT_MIN_ACCURACY")
    fi
    if [[ -n "${INPUT_BASELINE:-}" && -f "$INPUT_BASELINE" ]]; then
      args+=(--baseline "$INPUT_BASELINE" --max-regression "${INPUT_MAX_REGRESSION:-0.02}")
    elif [[ -n "${INPUT_BASELINE:-}" ]]; then
      echo "::notice::no baseline metrics at $INPUT_BASELINE; gating on --min-accuracy only"
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
    if [[ -f "$output_dir/report/metrics.json" ]]; then
      retrain-ci report "$output_dir" --github-step-summary > /dev/null
    fi
    if [[ -f "$check_summary" ]]; then
      cat "$check_summary" >> "${GITHUB_STEP_SUMMARY:-/dev/null}"
    fi
    ;;
  prune)
    # Drop cached bottlenecks and image properties of content no longer in the dataset, before the cache is saved.
    retrain-ci cache prune "$INPUT_DATA" --bottleneck-dir "$bottlenecks"
    ;;
  *)
    echo "usage: gate.sh check|train|summary|prune" >&2
    exit 2
    ;;
esac
