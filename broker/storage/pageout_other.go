//go:build !linux

package storage

import "errors"

var errPageOutUnsupported = errors.New("storage: reclaiming value-log pages needs Linux")

// pageOutValueLog is Linux only (MADV_PAGEOUT).
func pageOutValueLog(string) (int64, error) { return 0, errPageOutUnsupported }
