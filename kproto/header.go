package kproto

import (
	"encoding/binary"
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Kafka API keys whose headers break the general rule.
const (
	keyControlledShutdown int16 = 7
	keyApiVersions        int16 = 18
)

// Header is a request header: v1, or v2 (v1 plus tagged fields) when the
// request is flexible at its version.
type Header struct {
	Key           int16
	Version       int16
	CorrelationID int32
	// ClientID is nil when the client sent a null client id.
	ClientID *string
}

// ParseHeader parses the request header at the start of a frame body and
// returns it with the rest of the body (the request itself). Whether the
// header carries tagged fields depends on the key and version, so a key
// unknown to kmsg fails with ErrUnknownAPI (its key, version and correlation
// id are still filled in).
func ParseHeader(body []byte) (Header, []byte, error) {
	h, rest, _, err := parseHeader(body, nil)
	return h, rest, err
}

// parseHeader is ParseHeader that also returns the empty kmsg request for the
// key at the header's version, so that the caller decodes into the object it
// already had to build to learn whether the version is flexible. prevClientID
// is the previous client id seen on the connection: clients send the same one
// every time, and reusing it saves an allocation per request.
func parseHeader(body []byte, prevClientID *string) (Header, []byte, kmsg.Request, error) {
	var h Header
	if len(body) < 8 {
		return h, nil, nil, fmt.Errorf("%w: header of %d bytes, need at least 8", ErrMalformed, len(body))
	}
	h.Key = int16(binary.BigEndian.Uint16(body[0:]))
	h.Version = int16(binary.BigEndian.Uint16(body[2:]))
	h.CorrelationID = int32(binary.BigEndian.Uint32(body[4:]))
	b := body[8:]

	msg := kmsg.RequestForKey(h.Key)
	if msg == nil {
		return h, nil, nil, fmt.Errorf("%w: key %d", ErrUnknownAPI, h.Key)
	}
	msg.SetVersion(h.Version)

	// ControlledShutdown v0 predates client ids (request header v0).
	if h.Key == keyControlledShutdown && h.Version == 0 {
		return h, b, msg, nil
	}

	if len(b) < 2 {
		return h, nil, nil, fmt.Errorf("%w: client id length missing", ErrMalformed)
	}
	n := int16(binary.BigEndian.Uint16(b))
	b = b[2:]
	switch {
	case n == -1:
	case n < -1 || int(n) > len(b):
		return h, nil, nil, fmt.Errorf("%w: client id length %d with %d bytes left", ErrMalformed, n, len(b))
	default:
		raw := b[:n]
		b = b[n:]
		if prevClientID != nil && *prevClientID == string(raw) {
			h.ClientID = prevClientID
		} else {
			// Copied, not aliased: a handler may keep the client id, and
			// an alias would pin the whole frame (a produce batch) in memory.
			s := string(raw)
			h.ClientID = &s
		}
	}

	if msg.IsFlexible() {
		var err error
		if b, err = skipTags(b); err != nil {
			return h, nil, nil, fmt.Errorf("header tags: %w", err)
		}
	}
	return h, b, msg, nil
}

// skipTags skips a tagged-field section: a count, then per field a tag, a
// size and that many bytes. The server knows no header tags, so it ignores
// them, as the protocol allows.
func skipTags(b []byte) ([]byte, error) {
	count, b, err := uvarint(b)
	if err != nil {
		return nil, err
	}
	// Each field takes at least two bytes, so the loop ends when b does
	// however large count claims to be.
	for i := uint64(0); i < count; i++ {
		if _, b, err = uvarint(b); err != nil {
			return nil, err
		}
		var size uint64
		if size, b, err = uvarint(b); err != nil {
			return nil, err
		}
		if size > uint64(len(b)) {
			return nil, fmt.Errorf("%w: tagged field of %d bytes with %d left", ErrMalformed, size, len(b))
		}
		b = b[size:]
	}
	return b, nil
}

func uvarint(b []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, fmt.Errorf("%w: bad uvarint", ErrMalformed)
	}
	return v, b[n:], nil
}

// AppendRequestHeader appends h encoded as a request header: v2 when the
// request is flexible at h.Version, v1 otherwise (v0 for ControlledShutdown
// v0). It is the client side of ParseHeader, for tests and tools.
func AppendRequestHeader(dst []byte, h Header) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(h.Key))
	dst = binary.BigEndian.AppendUint16(dst, uint16(h.Version))
	dst = binary.BigEndian.AppendUint32(dst, uint32(h.CorrelationID))
	if h.Key == keyControlledShutdown && h.Version == 0 {
		return dst
	}
	if h.ClientID == nil {
		dst = binary.BigEndian.AppendUint16(dst, 0xffff)
	} else {
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(*h.ClientID)))
		dst = append(dst, *h.ClientID...)
	}
	if msg := kmsg.RequestForKey(h.Key); msg != nil {
		msg.SetVersion(h.Version)
		if msg.IsFlexible() {
			dst = append(dst, 0) // no tagged fields
		}
	}
	return dst
}

// AppendResponseHeader appends the response header for resp, whose version
// must already be set: the correlation id, then an empty tagged-field
// section when the response is flexible. ApiVersions always answers with
// header v0 so that a client that sent a version the server does not know
// can still read the reply.
func AppendResponseHeader(dst []byte, resp kmsg.Response, correlationID int32) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(correlationID))
	if resp.Key() != keyApiVersions && resp.IsFlexible() {
		dst = append(dst, 0)
	}
	return dst
}
