package kproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestReadFrame(t *testing.T) {
	frame := func(size int32, body string) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(size)), body...)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
		err  error
	}{
		{"ok", frame(5, "hello"), "hello", nil},
		{"empty frame", frame(0, ""), "", nil},
		{"at max", frame(16, "0123456789abcdef"), "0123456789abcdef", nil},
		{"clean eof", nil, "", io.EOF},
		{"eof in size", []byte{0, 0}, "", io.ErrUnexpectedEOF},
		{"eof in body", frame(5, "hel"), "", io.ErrUnexpectedEOF},
		{"too large", frame(17, ""), "", ErrFrameTooLarge},
		{"negative", frame(-1, ""), "", ErrNegativeSize},
		{"most negative", frame(-1<<31, ""), "", ErrNegativeSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadFrame(bytes.NewReader(tc.in), 16)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if string(got) != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReadFrameFreshBuffers(t *testing.T) {
	in := append(binary.BigEndian.AppendUint32(nil, 3), "abc"...)
	in = append(in, binary.BigEndian.AppendUint32(nil, 3)...)
	in = append(in, "xyz"...)
	r := bytes.NewReader(in)
	a, err := ReadFrame(r, 16)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ReadFrame(r, 16)
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != "abc" || string(b) != "xyz" {
		t.Fatalf("first frame changed by the second: %q %q", a, b)
	}
}

// TestReadFrameLargeGrowsWithData reads a frame larger than the eager
// allocation limit delivered in small pieces, and a large announced frame
// that is cut short.
func TestReadFrameLargeGrowsWithData(t *testing.T) {
	payload := make([]byte, 3*eagerFrameBytes+123)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	framed := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
	framed = append(framed, payload...)
	got, err := ReadFrame(iotest.HalfReader(bytes.NewReader(framed)), DefaultMaxFrameBytes)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("large frame: err %v, %d bytes, equal %v", err, len(got), bytes.Equal(got, payload))
	}
	short := binary.BigEndian.AppendUint32(nil, 50<<20)
	short = append(short, make([]byte, 10)...)
	if _, err := ReadFrame(bytes.NewReader(short), DefaultMaxFrameBytes); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut-short frame: %v", err)
	}
}
