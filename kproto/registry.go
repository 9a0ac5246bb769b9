// Package kproto speaks the Kafka wire protocol: framing, request and
// response headers, decoding and encoding with kmsg, and the table of API
// versions a server handles. It knows bytes, not storage.
package kproto

import (
	"context"
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Request is one decoded request.
type Request struct {
	Key           int16
	Version       int16
	CorrelationID int32
	ClientID      *string
	// Msg is the decoded body, its version already set.
	Msg kmsg.Request
	// Conn describes the connection the request came on.
	Conn *ConnInfo
}

// ConnInfo describes a client connection.
type ConnInfo struct {
	RemoteAddr string
	LocalAddr  string
}

// Handler serves one request. It runs on the connection's read loop, in
// request order, so it must not block for long: work that waits (a Fetch
// long poll, a Produce waiting for its sync) finishes later by calling
// respond from another goroutine. respond must be called exactly once;
// respond(nil) sends nothing (acks=0 produce), and respond(CloseConnection)
// sends nothing and closes the connection (a failed acks=0 produce). The
// response's version is set to the request's before it is encoded.
type Handler func(ctx context.Context, req *Request, respond func(kmsg.Response))

// CloseConnection, passed to respond, closes the connection once the
// responses to earlier requests are written; later requests are neither
// answered nor, if the handler responds before it returns, read. Kafka
// answers a failed acks=0 produce this way, since it has no response to
// carry the error: the client notices the closed connection and refreshes
// its metadata.
var CloseConnection kmsg.Response = closeConnection{}

// closeConnection is only ever compared against, never encoded.
type closeConnection struct{ kmsg.Response }

// API is one entry of the registry: an API key, the version range that is
// really handled, and the handler.
type API struct {
	Key        int16
	MinVersion int16
	MaxVersion int16
	Handle     Handler
	// Reject, if set, builds the response to a request whose version kmsg
	// can decode but that lies outside [MinVersion, MaxVersion]; it should
	// carry code (UNSUPPORTED_VERSION) wherever the response has an error
	// code. Without Reject such a request closes the connection.
	Reject func(req kmsg.Request, code int16) kmsg.Response
}

// Registry is the table of supported APIs. Dispatch and ApiVersions both read
// it, so a version range lives in exactly one place. It is filled before
// serving starts and only read afterwards.
type Registry struct {
	apis map[int16]API
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{apis: make(map[int16]API)} }

// Register adds api. It panics on a duplicate key or a version range kmsg
// cannot encode, both programming errors.
func (r *Registry) Register(api API) {
	if _, dup := r.apis[api.Key]; dup {
		panic("kproto: API registered twice: " + kmsg.NameForKey(api.Key))
	}
	proto := kmsg.RequestForKey(api.Key)
	if proto == nil || api.MinVersion < 0 || api.MinVersion > api.MaxVersion || api.MaxVersion > proto.MaxVersion() {
		panic("kproto: bad version range for " + kmsg.NameForKey(api.Key))
	}
	r.apis[api.Key] = api
}

// Lookup returns the API registered for key.
func (r *Registry) Lookup(key int16) (API, bool) {
	api, ok := r.apis[key]
	return api, ok
}

// Versions lists the registered APIs and their version ranges, ordered by
// key, as ApiVersions reports them.
func (r *Registry) Versions() []kmsg.ApiVersionsResponseApiKey {
	out := make([]kmsg.ApiVersionsResponseApiKey, 0, len(r.apis))
	for _, api := range r.apis {
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = api.Key, api.MinVersion, api.MaxVersion
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ApiKey < out[j].ApiKey })
	return out
}
