package kproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestHeaderRoundTrip(t *testing.T) {
	id := "client-1"
	empty := ""
	for _, tc := range []struct {
		name     string
		h        Header
		flexible bool
	}{
		{"produce v8", Header{Key: 0, Version: 8, CorrelationID: 7, ClientID: &id}, false},
		{"produce v9", Header{Key: 0, Version: 9, CorrelationID: -3, ClientID: &id}, true},
		{"metadata v12 null client", Header{Key: 3, Version: 12, CorrelationID: 1 << 30}, true},
		{"apiversions v2", Header{Key: 18, Version: 2, CorrelationID: 1, ClientID: &empty}, false},
		{"apiversions v3", Header{Key: 18, Version: 3, CorrelationID: 2, ClientID: &id}, true},
		{"controlled shutdown v0", Header{Key: 7, Version: 0, CorrelationID: 3}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := AppendRequestHeader(nil, tc.h)
			want := 8 + 2
			if tc.h.ClientID != nil {
				want += len(*tc.h.ClientID)
			}
			if tc.h.Key == 7 {
				want = 8
			}
			if tc.flexible {
				want++
			}
			if len(enc) != want {
				t.Fatalf("encoded header of %d bytes, want %d", len(enc), want)
			}
			got, rest, err := ParseHeader(append(enc, "body"...))
			if err != nil {
				t.Fatal(err)
			}
			if string(rest) != "body" {
				t.Fatalf("rest %q", rest)
			}
			if got.Key != tc.h.Key || got.Version != tc.h.Version || got.CorrelationID != tc.h.CorrelationID {
				t.Fatalf("got %+v, want %+v", got, tc.h)
			}
			if (got.ClientID == nil) != (tc.h.ClientID == nil) || got.ClientID != nil && *got.ClientID != *tc.h.ClientID {
				t.Fatalf("client id %v, want %v", got.ClientID, tc.h.ClientID)
			}
		})
	}
}

func TestHeaderSkipsTaggedFields(t *testing.T) {
	b := binary.BigEndian.AppendUint16(nil, 3) // Metadata
	b = binary.BigEndian.AppendUint16(b, 9)    // flexible
	b = binary.BigEndian.AppendUint32(b, 42)
	b = binary.BigEndian.AppendUint16(b, 2)
	b = append(b, "id"...)
	b = append(b, 2) // two tagged fields
	b = append(b, 0, 3, 'a', 'b', 'c')
	b = append(b, 0x80, 0x01, 0) // tag 128, empty
	b = append(b, "body"...)
	h, rest, err := ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.CorrelationID != 42 || *h.ClientID != "id" || string(rest) != "body" {
		t.Fatalf("got %+v rest %q", h, rest)
	}
}

func TestHeaderMalformed(t *testing.T) {
	fixed := func(key, version int16) []byte {
		b := binary.BigEndian.AppendUint16(nil, uint16(key))
		b = binary.BigEndian.AppendUint16(b, uint16(version))
		return binary.BigEndian.AppendUint32(b, 9)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"short", fixed(3, 1)[:7], ErrMalformed},
		{"no client id", fixed(3, 1), ErrMalformed},
		{"client id too long", append(fixed(3, 1), 0, 5, 'a'), ErrMalformed},
		{"client id length -2", append(fixed(3, 1), 0xff, 0xfe), ErrMalformed},
		{"no tag section", append(fixed(3, 9), 0xff, 0xff), ErrMalformed},
		{"tag count without tags", append(fixed(3, 9), 0xff, 0xff, 5), ErrMalformed},
		{"tag size too large", append(fixed(3, 9), 0xff, 0xff, 1, 0, 9, 'x'), ErrMalformed},
		{"bad uvarint", append(fixed(3, 9), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), ErrMalformed},
		{"unknown key", append(fixed(9999, 0), 0xff, 0xff), ErrUnknownAPI},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParseHeader(tc.b)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func TestResponseHeader(t *testing.T) {
	for _, tc := range []struct {
		resp    kmsg.Response
		version int16
		tagByte bool
	}{
		{kmsg.NewPtrMetadataResponse(), 8, false},
		{kmsg.NewPtrMetadataResponse(), 9, true},
		{kmsg.NewPtrProduceResponse(), 9, true},
		{kmsg.NewPtrApiVersionsResponse(), 0, false},
		{kmsg.NewPtrApiVersionsResponse(), 3, false}, // always header v0
		{kmsg.NewPtrApiVersionsResponse(), 4, false},
	} {
		tc.resp.SetVersion(tc.version)
		got := AppendResponseHeader([]byte("x"), tc.resp, 0x01020304)
		want := []byte{'x', 1, 2, 3, 4}
		if tc.tagByte {
			want = append(want, 0)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s v%d: header %x, want %x", kmsg.NameForKey(tc.resp.Key()), tc.version, got, want)
		}
	}
}
