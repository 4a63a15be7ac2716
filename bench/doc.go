// Package bench holds registryd's benchmarks. They are not part of the test suite's
// pass/fail: run them explicitly (see README.md in this directory) and commit the tables
// they write under results/. Every figure is measured side by side in one run, so the
// ratios hold on a noisy shared machine where absolute numbers do not.
package bench
