// Package shapes compares the JSON every endpoint answers with the Go type the official client
// (github.com/hashicorp/consul/api) decodes it into: a key the type does not have is an extra
// field, and a field of the type without `omitempty` that the answer lacks is a missing one.
// Both are reported with the JSON path where they occur.
//
// The agent under test is started by the client's own harness (sdk/testutil), which execs
// `consul` from PATH: shapes.sh puts consul-rs there; with the real Consul on PATH the same
// test documents Consul's own answers (see shapes.sh).
package shapes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/consul/sdk/testutil"
)

// unmarshaler types decode themselves: their JSON is not a struct's field set.
var unmarshaler = reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()

// jsonField is one field of a struct as encoding/json sees it.
type jsonField struct {
	typ       reflect.Type
	omitEmpty bool
}

// fieldsOf lists the JSON fields of struct type t, embedded structs flattened, as
// encoding/json names them.
func fieldsOf(t reflect.Type) map[string]jsonField {
	out := map[string]jsonField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				for k, v := range fieldsOf(et) {
					out[k] = v
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = jsonField{typ: f.Type, omitEmpty: strings.Contains(opts, "omitempty")}
	}
	return out
}

// compare walks value (decoded JSON) against type t and appends each difference to problems.
func compare(path string, value interface{}, t reflect.Type, problems *[]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if value == nil {
		return // null fits any pointer, slice, map or interface; values are not this test's subject
	}
	if reflect.PointerTo(t).Implements(unmarshaler) || t.Implements(unmarshaler) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if t == reflect.TypeOf(time.Time{}) {
			return
		}
		obj, ok := value.(map[string]interface{})
		if !ok {
			*problems = append(*problems, fmt.Sprintf("%s: an object was expected, got %T", path, value))
			return
		}
		fields := fieldsOf(t)
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			f, ok := fields[k]
			if !ok {
				*problems = append(*problems, fmt.Sprintf("%s.%s: extra field (not in api.%s)", path, k, t.Name()))
				continue
			}
			compare(path+"."+k, obj[k], f.typ, problems)
		}
		names := make([]string, 0, len(fields))
		for k := range fields {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			if _, ok := obj[k]; !ok && !fields[k].omitEmpty {
				*problems = append(*problems, fmt.Sprintf("%s.%s: missing field (api.%s has it without omitempty)", path, k, t.Name()))
			}
		}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return // []byte is base64 text
		}
		arr, ok := value.([]interface{})
		if !ok {
			*problems = append(*problems, fmt.Sprintf("%s: an array was expected, got %T", path, value))
			return
		}
		for i, v := range arr {
			_ = i // every element shares one path: the answer's shape, not its length, is compared
			compare(path+"[i]", v, t.Elem(), problems)
		}
	case reflect.Map:
		obj, ok := value.(map[string]interface{})
		if !ok {
			*problems = append(*problems, fmt.Sprintf("%s: an object was expected, got %T", path, value))
			return
		}
		for _, v := range obj {
			compare(path+"[k]", v, t.Elem(), problems) // keys are data (IDs, names), not shape
		}
	}
}

// endpoint is one request and the client type its answer decodes into.
type endpoint struct {
	method, path string
	body         interface{}
	into         interface{} // a value of the api type (pointer or not)
}

// fetch requests e from the agent at addr with token and lists how the answer's shape differs
// from e.into's type.
func fetch(t *testing.T, addr, token string, e endpoint) []string {
	t.Helper()
	var body io.Reader
	if e.body != nil {
		b, err := json.Marshal(e.body)
		must(t, err)
		body = bytes.NewReader(b)
	}
	var raw []byte
	var status int
	// A 500 is retried a few times: Consul's own /v1/agent/metrics fails now and then with
	// "json: unsupported value: NaN" while a sample's statistics are undefined.
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequest(e.method, "http://"+addr+e.path, body)
		must(t, err)
		if token != "" {
			req.Header.Set("X-Consul-Token", token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", e.method, e.path, err)
		}
		raw, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		must(t, err)
		status = resp.StatusCode
		if status != 500 || attempt == 4 || e.method != "GET" {
			break
		}
		time.Sleep(time.Second)
	}
	// The health endpoints of the agent and of autopilot answer 429 (warning, or not yet
	// healthy) and 503 (critical) with the same body as their 200.
	health := strings.HasPrefix(e.path, "/v1/agent/health/") || e.path == "/v1/operator/autopilot/health"
	if status != 200 && !(health && (status == 429 || status == 503)) {
		t.Fatalf("%s %s: status %d: %s", e.method, e.path, status, raw)
	}
	var value interface{}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&value); err != nil {
		t.Fatalf("%s %s: not JSON: %v: %s", e.method, e.path, err, raw)
	}
	var problems []string
	compare("$", value, reflect.TypeOf(e.into), &problems)
	if len(problems) > 0 {
		t.Logf("%s %s answered: %s", e.method, e.path, raw)
	}
	return problems
}

// expectedFile holds the differences the real Consul 1.16.0 shows for the same requests: what
// its server sends beyond or short of the client's types (shapes.sh -record writes it).
const expectedFile = "consul-1.16.0.txt"

// deliberateFile lists where consul-rs departs from Consul on purpose, each with its reason.
const deliberateFile = "deliberate.txt"

// readExpected loads expectedFile and deliberateFile: `LABEL<TAB>difference[<TAB>why]` lines,
// # comments.
func readExpected(t *testing.T) map[string][]string {
	out := map[string][]string{}
	for _, file := range []string{expectedFile, deliberateFile} {
		raw, err := os.ReadFile(file)
		must(t, err)
		for _, line := range strings.Split(string(raw), "\n") {
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			parts := strings.Split(line, "\t")
			if len(parts) < 2 || (file == deliberateFile && len(parts) != 3) {
				t.Fatalf("%s: malformed line %q", file, line)
			}
			out[parts[0]] = append(out[parts[0]], parts[1])
		}
	}
	return out
}

// set makes a sorted, de-duplicated copy.
func set(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}

// minus lists what a has and b lacks.
func minus(a, b []string) []string {
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	var out []string
	for _, x := range a {
		if !in[x] {
			out = append(out, x)
		}
	}
	return out
}

// run checks every endpoint (labelled with placeholders for generated names) and compares the
// differences with Consul's, or records them under SHAPES_RECORD=FILE.
func run(t *testing.T, addr, token string, labels map[string]string, endpoints []endpoint) {
	label := func(e endpoint) string {
		l := e.method + " " + e.path
		for value, name := range labels {
			l = strings.ReplaceAll(l, value, name)
		}
		return l
	}
	if out := os.Getenv("SHAPES_RECORD"); out != "" {
		f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		must(t, err)
		defer f.Close()
		for _, e := range endpoints {
			for _, d := range set(fetch(t, addr, token, e)) {
				fmt.Fprintf(f, "%s\t%s\n", label(e), d)
			}
		}
		return
	}
	expected := readExpected(t)
	for _, e := range endpoints {
		e := e
		t.Run(label(e), func(t *testing.T) {
			ours := set(fetch(t, addr, token, e))
			consul := set(expected[label(e)])
			if extra := minus(ours, consul); len(extra) > 0 {
				t.Errorf("differs where Consul 1.16.0 does not:\n  %s", strings.Join(extra, "\n  "))
			}
			if lacking := minus(consul, ours); len(lacking) > 0 {
				t.Errorf("Consul 1.16.0 differs here and consul-rs does not (Consul sends a field the client type lacks, or leaves one out):\n  %s", strings.Join(lacking, "\n  "))
			}
		})
	}
}

// must fails the test on a client error.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestShapes seeds one dev agent with a bit of everything and checks every read endpoint the
// Go, Python and Node clients call.
func TestShapes(t *testing.T) {
	srv, err := testutil.NewTestServerConfigT(t, nil)
	must(t, err)
	defer srv.Stop()
	srv.WaitForSerfCheck(t)
	client, err := api.NewClient(&api.Config{Address: srv.HTTPAddr})
	must(t, err)
	node := srv.Config.NodeName

	agent := client.Agent()
	must(t, agent.ServiceRegister(&api.AgentServiceRegistration{
		ID: "web-1", Name: "web", Tags: []string{"v1", "primary"}, Port: 8080, Address: "127.0.0.10",
		Meta:            map[string]string{"version": "1"},
		TaggedAddresses: map[string]api.ServiceAddress{"lan": {Address: "127.0.0.10", Port: 8080}},
		Weights:         &api.AgentWeights{Passing: 3, Warning: 1},
		Check:           &api.AgentServiceCheck{CheckID: "web-ttl", TTL: "30s", Status: api.HealthPassing},
	}))
	must(t, agent.CheckRegister(&api.AgentCheckRegistration{
		ID: "node-ttl", Name: "node ttl", AgentServiceCheck: api.AgentServiceCheck{TTL: "30s", Status: api.HealthWarning},
	}))
	_, err = client.Catalog().Register(&api.CatalogRegistration{
		Node: "ext-1", Address: "127.0.0.20", NodeMeta: map[string]string{"rack": "r1"},
		Service: &api.AgentService{ID: "db-1", Service: "db", Port: 5432, Tags: []string{"pg"}},
		Check:   &api.AgentCheck{Node: "ext-1", CheckID: "db-alive", Name: "db alive", Status: api.HealthPassing, ServiceID: "db-1"},
	}, nil)
	must(t, err)
	_, err = client.KV().Put(&api.KVPair{Key: "app/config", Flags: 42, Value: []byte("v")}, nil)
	must(t, err)
	session, _, err := client.Session().Create(&api.SessionEntry{Name: "lock", TTL: "60s", Checks: []string{"serfHealth"}}, nil)
	must(t, err)
	_, _, err = client.Event().Fire(&api.UserEvent{Name: "deploy", Payload: []byte("x")}, nil)
	must(t, err)
	// The agent's service must be in the catalog before the catalog and health reads.
	deadline := time.Now().Add(20 * time.Second)
	for {
		entries, _, err := client.Health().Service("web", "", false, nil)
		if err == nil && len(entries) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("web never reached the catalog: %v %v", entries, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	txn := []map[string]interface{}{
		{"KV": map[string]interface{}{"Verb": "get", "Key": "app/config"}},
		{"Node": map[string]interface{}{"Verb": "get", "Node": map[string]interface{}{"Node": "ext-1"}}},
		{"Service": map[string]interface{}{"Verb": "get", "Node": "ext-1", "Service": map[string]interface{}{"ID": "db-1"}}},
		{"Check": map[string]interface{}{"Verb": "get", "Check": map[string]interface{}{"Node": "ext-1", "CheckID": "db-alive"}}},
	}
	endpoints := []endpoint{
		{"GET", "/v1/agent/services", nil, map[string]*api.AgentService{}},
		{"GET", "/v1/agent/service/web-1", nil, api.AgentService{}},
		{"GET", "/v1/agent/checks", nil, map[string]*api.AgentCheck{}},
		{"GET", "/v1/agent/members", nil, []*api.AgentMember{}},
		{"GET", "/v1/agent/health/service/id/web-1", nil, api.AgentServiceChecksInfo{}},
		{"GET", "/v1/agent/health/service/name/web", nil, []api.AgentServiceChecksInfo{}},
		{"GET", "/v1/agent/metrics", nil, api.MetricsInfo{}},
		{"GET", "/v1/catalog/datacenters", nil, []string{}},
		{"GET", "/v1/catalog/nodes", nil, []*api.Node{}},
		{"GET", "/v1/catalog/services", nil, map[string][]string{}},
		{"GET", "/v1/catalog/service/web", nil, []*api.CatalogService{}},
		{"GET", "/v1/catalog/service/db", nil, []*api.CatalogService{}},
		{"GET", "/v1/catalog/node/" + node, nil, api.CatalogNode{}},
		{"GET", "/v1/catalog/node/ext-1", nil, api.CatalogNode{}},
		{"GET", "/v1/catalog/node-services/" + node, nil, api.CatalogNodeServiceList{}},
		{"GET", "/v1/health/service/web", nil, []*api.ServiceEntry{}},
		{"GET", "/v1/health/checks/web", nil, []*api.HealthCheck{}},
		{"GET", "/v1/health/node/" + node, nil, []*api.HealthCheck{}},
		{"GET", "/v1/health/state/any", nil, []*api.HealthCheck{}},
		{"GET", "/v1/kv/app/config", nil, []*api.KVPair{}},
		{"GET", "/v1/kv/app?keys", nil, []string{}},
		{"GET", "/v1/session/info/" + session, nil, []*api.SessionEntry{}},
		{"GET", "/v1/session/list", nil, []*api.SessionEntry{}},
		{"GET", "/v1/session/node/" + node, nil, []*api.SessionEntry{}},
		{"PUT", "/v1/txn", txn, api.TxnResponse{}},
		{"GET", "/v1/event/list", nil, []*api.UserEvent{}},
		{"GET", "/v1/status/peers", nil, []string{}},
		{"GET", "/v1/coordinate/datacenters", nil, []*api.CoordinateDatacenterMap{}},
		{"GET", "/v1/operator/raft/configuration", nil, api.RaftConfiguration{}},
		{"GET", "/v1/operator/autopilot/configuration", nil, api.AutopilotConfiguration{}},
		{"GET", "/v1/operator/autopilot/health", nil, api.OperatorHealthReply{}},
		{"GET", "/v1/operator/autopilot/state", nil, api.AutopilotState{}},
		{"GET", "/v1/operator/usage", nil, api.Usage{}},
		{"GET", "/v1/connect/ca/roots", nil, api.CARootList{}},
		{"GET", "/v1/agent/connect/ca/roots", nil, api.CARootList{}},
		{"GET", "/v1/agent/connect/ca/leaf/web", nil, api.LeafCert{}},
	}
	run(t, srv.HTTPAddr, "", map[string]string{node: "<node>", session: "<session>"}, endpoints)
}

// TestShapesACL checks the ACL endpoints on an agent with ACLs on.
func TestShapesACL(t *testing.T) {
	const root = "3a0c8b0e-6b47-4c5a-9d8e-1f2a3b4c5d6e"
	srv, err := testutil.NewTestServerConfigT(t, func(c *testutil.TestServerConfig) {
		c.ACL.Enabled = true
		c.ACL.DefaultPolicy = "deny"
		c.ACL.Tokens.InitialManagement = root
	})
	must(t, err)
	defer srv.Stop()
	client, err := api.NewClient(&api.Config{Address: srv.HTTPAddr, Token: root})
	must(t, err)
	srv.WaitForLeader(t)
	acl := client.ACL()
	var policy *api.ACLPolicy
	deadline := time.Now().Add(20 * time.Second)
	for {
		policy, _, err = acl.PolicyCreate(&api.ACLPolicy{Name: "kv-read", Rules: `key_prefix "" { policy = "read" }`}, nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("policy create: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	role, _, err := acl.RoleCreate(&api.ACLRole{Name: "reader", Policies: []*api.ACLRolePolicyLink{{ID: policy.ID}}}, nil)
	must(t, err)
	token, _, err := acl.TokenCreate(&api.ACLToken{Description: "app", Roles: []*api.ACLTokenRoleLink{{ID: role.ID}}}, nil)
	must(t, err)

	endpoints := []endpoint{
		{"GET", "/v1/acl/tokens", nil, []*api.ACLTokenListEntry{}},
		{"GET", "/v1/acl/token/" + token.AccessorID, nil, api.ACLToken{}},
		{"GET", "/v1/acl/token/self", nil, api.ACLToken{}},
		{"GET", "/v1/acl/policies", nil, []*api.ACLPolicyListEntry{}},
		{"GET", "/v1/acl/policy/" + policy.ID, nil, api.ACLPolicy{}},
		{"GET", "/v1/acl/roles", nil, []*api.ACLRole{}},
		{"GET", "/v1/acl/role/" + role.ID, nil, api.ACLRole{}},
	}
	labels := map[string]string{token.AccessorID: "<token>", policy.ID: "<policy>", role.ID: "<role>"}
	run(t, srv.HTTPAddr, root, labels, endpoints)
}

// TestCompareCatchesBothKinds keeps the checker honest: it must report an extra and a missing
// field, and accept an exact answer.
func TestCompareCatchesBothKinds(t *testing.T) {
	type inner struct {
		A string
		B string `json:",omitempty"`
	}
	type outer struct {
		Name  string
		Items []inner
	}
	var problems []string
	var exact interface{}
	must(t, json.Unmarshal([]byte(`{"Name":"x","Items":[{"A":"1"}]}`), &exact))
	compare("$", exact, reflect.TypeOf(outer{}), &problems)
	if len(problems) != 0 {
		t.Fatalf("an exact answer was reported: %v", problems)
	}
	var wrong interface{}
	must(t, json.Unmarshal([]byte(`{"Name":"x","Items":[{"B":"2","C":3}]}`), &wrong))
	compare("$", wrong, reflect.TypeOf(outer{}), &problems)
	want := []string{
		"$.Items[i].C: extra field (not in api.inner)",
		"$.Items[i].A: missing field (api.inner has it without omitempty)",
	}
	if !reflect.DeepEqual(problems, want) {
		t.Fatalf("got %q, want %q", problems, want)
	}
}
