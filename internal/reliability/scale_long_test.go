//go:build reliability

package reliability_test

// long is true under the build tag reliability (`make reliability`): the checks
// run at the counts of docs/reliability.md.
const long = true
