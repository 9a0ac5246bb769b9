package storage

import "errors"

var (
	// ErrNotFound is returned by Get for a missing key.
	ErrNotFound = errors.New("storage: key not found")
	// ErrClosed is returned (and passed to Done) once the store is closed.
	ErrClosed = errors.New("storage: closed")
	// ErrInvalid is passed to Done for a Write the store refuses (negative
	// offsets, LastOffset < BaseOffset, oversized key or batch), and
	// returned for invalid options. Other Writes are not affected.
	ErrInvalid = errors.New("storage: invalid argument")
	// ErrCorrupt is returned when stored keys do not decode.
	ErrCorrupt = errors.New("storage: corrupt data")
)
