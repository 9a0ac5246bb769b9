package kproto

import (
	"encoding/binary"
	"fmt"
	"io"
)

// DefaultMaxFrameBytes is the largest frame accepted when ConnConfig leaves
// MaxFrameBytes zero (Kafka's socket.request.max.bytes).
const DefaultMaxFrameBytes int32 = 100 << 20

// ReadFrame reads one frame: a big-endian int32 size, then that many bytes.
// A size above maxBytes, or negative, fails with ErrFrameTooLarge or
// ErrNegativeSize before anything is allocated. It returns io.EOF only when r
// ends cleanly between frames.
//
// Every frame gets a fresh buffer: decoded requests alias it (Produce
// records), so it must never be reused.
func ReadFrame(r io.Reader, maxBytes int32) ([]byte, error) {
	var size [4]byte
	return readFrame(r, maxBytes, size[:])
}

// readFrame is ReadFrame with the size buffer supplied by the caller, so the
// connection's read loop does not allocate one per frame.
func readFrame(r io.Reader, maxBytes int32, sizeBuf []byte) ([]byte, error) {
	if _, err := io.ReadFull(r, sizeBuf[:4]); err != nil {
		return nil, err // io.EOF between frames is a clean close
	}
	size := int32(binary.BigEndian.Uint32(sizeBuf))
	switch {
	case size < 0:
		return nil, fmt.Errorf("%w: %d", ErrNegativeSize, size)
	case size > maxBytes:
		return nil, fmt.Errorf("%w: %d bytes, max %d", ErrFrameTooLarge, size, maxBytes)
	}
	// Small frames, the common case, are read in one allocation. A large
	// one grows with the bytes that actually arrive, so a peer that only
	// announces a huge frame cannot make the broker allocate it.
	if size <= eagerFrameBytes {
		buf := make([]byte, size)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, frameReadError(size, err)
		}
		return buf, nil
	}
	buf := make([]byte, 0, eagerFrameBytes)
	for len(buf) < int(size) {
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, min(cap(buf), int(size)-len(buf)))...)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), int(size))])
		buf = buf[:len(buf)+n]
		if err != nil && len(buf) < int(size) {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, frameReadError(size, err)
		}
	}
	return buf, nil
}

// eagerFrameBytes is the largest frame allocated before its bytes arrive.
const eagerFrameBytes = 1 << 20

func frameReadError(size int32, err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF // the peer went away inside a frame
	}
	return fmt.Errorf("reading %d-byte frame: %w", size, err)
}
