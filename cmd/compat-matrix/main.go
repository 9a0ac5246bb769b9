// Command compat-matrix runs the compatibility suite's matrix test
// (TestMatrix in compat-tests) and writes the client × feature table it
// produced into README.md between the compat-matrix markers.
//
// Run it from the repository root: go run ./cmd/compat-matrix
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/pubg1/pubg1/compat-tests/matrix"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "compat-matrix:", err)
		os.Exit(1)
	}
}

func run() error {
	if _, err := os.Stat("compat-tests/matrix"); err != nil {
		return fmt.Errorf("run this from the repository root: %w", err)
	}
	dir, err := os.MkdirTemp("", "compat-matrix")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	out, err := filepath.Abs(filepath.Join(dir, "matrix.md"))
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "test", "-count=1", "-timeout", "30m", "-run", "^TestMatrix$", "./compat-tests", "-args", "-matrix.out="+out)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	testErr := cmd.Run()
	table, err := os.ReadFile(out)
	if err != nil {
		return errors.Join(fmt.Errorf("the suite produced no matrix: %w", err), testErr)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		return err
	}
	updated, err := matrix.Splice(readme, string(table))
	if err != nil {
		return err
	}
	if err := os.WriteFile("README.md", updated, 0o644); err != nil {
		return err
	}
	fmt.Println("README.md: compatibility matrix updated")
	if testErr != nil {
		return fmt.Errorf("the suite failed (the failed cells are marked in the README): %w", testErr)
	}
	return nil
}
