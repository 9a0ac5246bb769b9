package kproto

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ParseRequest parses one frame body exactly as Serve's read loop does:
// header, registry lookup, version check, body decode. The outcomes are:
//
//   - req with req.Msg decoded and reply nil: the registered handler serves it;
//   - req and a non-nil reply, its version already set: the server answers
//     with reply instead of calling the handler. That is an ApiVersions
//     newer than registered (req.Msg is nil, the body is not decoded and
//     reply is a v0 UNSUPPORTED_VERSION listing the registry) or a version
//     outside the registered range that the API's Reject answers;
//   - an error wrapping ErrMalformed, ErrUnknownAPI or ErrUnsupportedVersion:
//     the connection must be closed.
//
// It never panics on any input. req.Conn is left nil.
func ParseRequest(reg *Registry, body []byte) (req *Request, reply kmsg.Response, err error) {
	p := parser{reg: reg}
	req, reply, _, err = p.parse(body)
	return req, reply, err
}

// parser carries what one connection remembers between requests.
type parser struct {
	reg      *Registry
	clientID *string
}

func (p *parser) parse(body []byte) (*Request, kmsg.Response, API, error) {
	h, rest, msg, err := parseHeader(body, p.clientID)
	if err != nil {
		return nil, nil, API{}, err
	}
	p.clientID = h.ClientID
	name := kmsg.NameForKey(h.Key)
	api, ok := p.reg.Lookup(h.Key)
	if !ok {
		return nil, nil, API{}, fmt.Errorf("%w: %s (key %d) is not served", ErrUnknownAPI, name, h.Key)
	}
	req := &Request{Key: h.Key, Version: h.Version, CorrelationID: h.CorrelationID, ClientID: h.ClientID}

	if h.Version < 0 {
		return nil, nil, api, fmt.Errorf("%w: %s v%d", ErrUnsupportedVersion, name, h.Version)
	}
	if h.Key == keyApiVersions && h.Version > api.MaxVersion {
		// A client newer than the server asks with a version whose body
		// the server cannot know; Kafka answers in v0, which every client
		// reads, with the ApiVersions range alone so the client can retry
		// at a version both know.
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.SetVersion(0)
		resp.ErrorCode = kerr.UnsupportedVersion.Code
		own := kmsg.NewApiVersionsResponseApiKey()
		own.ApiKey, own.MinVersion, own.MaxVersion = api.Key, api.MinVersion, api.MaxVersion
		resp.ApiKeys = []kmsg.ApiVersionsResponseApiKey{own}
		return req, resp, api, nil
	}
	if h.Version < api.MinVersion || h.Version > api.MaxVersion {
		if api.Reject == nil || h.Version > msg.MaxVersion() {
			return nil, nil, api, fmt.Errorf("%w: %s v%d, serving v%d to v%d", ErrUnsupportedVersion, name, h.Version, api.MinVersion, api.MaxVersion)
		}
		if err := decode(msg, rest); err != nil {
			return nil, nil, api, fmt.Errorf("%s v%d: %w", name, h.Version, err)
		}
		req.Msg = msg
		resp := api.Reject(msg, kerr.UnsupportedVersion.Code)
		if resp == nil {
			return nil, nil, api, fmt.Errorf("%w: %s v%d rejected without a response", ErrUnsupportedVersion, name, h.Version)
		}
		resp.SetVersion(h.Version)
		return req, resp, api, nil
	}
	if err := decode(msg, rest); err != nil {
		return nil, nil, api, fmt.Errorf("%s v%d: %w", name, h.Version, err)
	}
	req.Msg = msg
	return req, nil, api, nil
}

// decode reads b into msg. kmsg checks lengths against the bytes left rather
// than trusting them, but a client's bytes must never take the process down,
// so a panic in the decoder becomes an ErrMalformed that closes the
// connection.
func decode(msg kmsg.Request, b []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: decoder panicked: %v", ErrMalformed, r)
		}
	}()
	if err := msg.ReadFrom(b); err != nil {
		return fmt.Errorf("%w: body does not decode: %w", ErrMalformed, err)
	}
	return nil
}
