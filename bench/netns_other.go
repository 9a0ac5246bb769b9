//go:build !linux

package bench

import (
	"context"
	"errors"
)

// netnsNet exists only on Linux; elsewhere a namespaced cluster cannot
// be started.
type netnsNet struct{}

var errNoNetns = errors.New("bench: network namespaces need Linux")

func netnsSupported() error { return errNoNetns }

func newNetns(context.Context, int) (*netnsNet, error) { return nil, errNoNetns }

func (*netnsNet) addr(int) string                     { return "" }
func (*netnsNet) prefixCmd(int) []string              { return nil }
func (*netnsNet) cut(context.Context, int, int) error { return errNoNetns }
func (*netnsNet) heal(context.Context) error          { return errNoNetns }
func (*netnsNet) cutPairs() [][2]int                  { return nil }
func (*netnsNet) close() error                        { return nil }
