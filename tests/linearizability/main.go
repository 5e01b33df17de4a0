// Command linearizability checks a recorded history of Consul KV operations
// for linearizability with porcupine, the checker etcd's robustness tests use.
//
// Usage:
//
//	linearizability [-timeout 60s] [-html DIR] HISTORY.json
//
// The history is a JSON object {"ops": [...]} written by the Rust fault suite
// (tests/src/fault). Each key is an independent register and is checked on
// its own. One JSON line is printed per key, then an overall verdict line.
//
// Exit status: 0 linearizable, 1 not linearizable, 2 bad input or usage,
// 3 the check timed out on some key (and found no violation elsewhere).
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Op is one recorded client operation, as the Rust side serializes it.
type Op struct {
	Client int    `json:"client"`
	Key    string `json:"key"`
	Kind   string `json:"kind"` // "put", "cas" or "get"
	Input  struct {
		Value    string `json:"value"`    // put/cas: the value written
		Expected string `json:"expected"` // cas: the value the index was read with ("" = absent)
	} `json:"input"`
	// Output is absent when the outcome is unknown (return_ns null).
	Output *struct {
		Ok    bool   `json:"ok"`    // put/cas: the server answered true
		Value string `json:"value"` // get: the value read ("" = absent)
	} `json:"output"`
	CallNs   int64  `json:"call_ns"`
	ReturnNs *int64 `json:"return_ns"`
	Meta     string `json:"meta"` // free text (server, mode, index) for reports
}

// History is the file format.
type History struct {
	Ops []Op `json:"ops"`
}

// kvInput is the model's view of an operation's input.
type kvInput struct {
	kind     string
	value    string
	expected string
}

// kvOutput is the model's view of an operation's output. unknown marks a
// write whose outcome the client never learned: it may or may not have
// taken effect.
type kvOutput struct {
	unknown bool
	ok      bool
	value   string
}

// kvModel is a single Consul KV key as a register. The state is the key's
// current value, "" when absent. Values written are unique per history, so
// a value identifies the write that produced it, and a CAS on the
// ModifyIndex read together with a value succeeds exactly when that value is
// still current.
var kvModel = porcupine.Model{
	Init: func() interface{} { return "" },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		st := state.(string)
		in := input.(kvInput)
		out := output.(kvOutput)
		switch in.kind {
		case "put":
			// A PUT always succeeds; an unknown one that porcupine
			// linearizes here is taken to have applied (the
			// "never applied" case is linearizing it last, at +inf).
			return out.unknown || out.ok, in.value
		case "cas":
			applies := st == in.expected
			if out.unknown {
				if applies {
					return true, in.value
				}
				return true, st
			}
			if out.ok != applies {
				return false, st
			}
			if applies {
				return true, in.value
			}
			return true, st
		case "get":
			return out.value == st, st
		}
		return false, st
	},
	DescribeOperation: func(input, output interface{}) string {
		in := input.(kvInput)
		out := output.(kvOutput)
		res := "?"
		if !out.unknown {
			switch in.kind {
			case "get":
				res = quote(out.value)
			default:
				res = fmt.Sprint(out.ok)
			}
		}
		switch in.kind {
		case "put":
			return fmt.Sprintf("put(%s) -> %s", quote(in.value), res)
		case "cas":
			return fmt.Sprintf("cas(%s, %s) -> %s", quote(in.expected), quote(in.value), res)
		default:
			return fmt.Sprintf("get() -> %s", res)
		}
	},
	DescribeState: func(state interface{}) string { return quote(state.(string)) },
	DescribeOperationMetadata: func(info interface{}) string {
		if info == nil {
			return ""
		}
		return info.(string)
	},
}

// quote renders a value, with the absent key as "<absent>".
func quote(v string) string {
	if v == "" {
		return "<absent>"
	}
	return fmt.Sprintf("%q", v)
}

// KeyVerdict is the per-key output line.
type KeyVerdict struct {
	Key    string `json:"key"`
	Ops    int    `json:"ops"`
	Result string `json:"result"` // "ok", "illegal" or "unknown"
	// Detail explains an illegal result: the longest linearizable prefix
	// porcupine found and the operations it could not place after it.
	Detail string `json:"detail,omitempty"`
	HTML   string `json:"html,omitempty"`
}

// Overall is the final output line.
type Overall struct {
	Ok      bool     `json:"ok"`
	Result  string   `json:"result"`
	Keys    int      `json:"keys"`
	Ops     int      `json:"ops"`
	Illegal []string `json:"illegal"`
	Unknown []string `json:"unknown"`
}

func main() {
	timeout := flag.Duration("timeout", 60*time.Second, "give up on a key after this long (result \"unknown\", exit 3)")
	htmlDir := flag.String("html", "", "write porcupine's visualization of each failing key to this directory")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [-timeout D] [-html DIR] HISTORY.json\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	keys, err := load(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "linearizability:", err)
		os.Exit(2)
	}
	os.Exit(run(keys, *timeout, *htmlDir, os.Stdout))
}

// load reads a history file and partitions it into porcupine operations per key.
func load(path string) (map[string][]porcupine.Operation, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var h History
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	keys := make(map[string][]porcupine.Operation)
	for i, op := range h.Ops {
		o, err := convert(op)
		if err != nil {
			return nil, fmt.Errorf("%s: op %d: %w", path, i, err)
		}
		keys[op.Key] = append(keys[op.Key], o)
	}
	return keys, nil
}

// convert turns a recorded op into a porcupine operation, giving an unknown
// outcome a return time of +infinity so it may take effect at any point
// after its call, or never.
func convert(op Op) (porcupine.Operation, error) {
	in := kvInput{kind: op.Kind, value: op.Input.Value, expected: op.Input.Expected}
	switch op.Kind {
	case "put", "cas":
		if op.Input.Value == "" {
			return porcupine.Operation{}, fmt.Errorf("%s without a value", op.Kind)
		}
	case "get":
		// A read whose outcome is unknown tells nothing; the recorder drops them.
		if op.ReturnNs == nil || op.Output == nil {
			return porcupine.Operation{}, fmt.Errorf("get without a return")
		}
	default:
		return porcupine.Operation{}, fmt.Errorf("unknown kind %q", op.Kind)
	}
	if op.Client < 0 {
		return porcupine.Operation{}, fmt.Errorf("negative client id")
	}
	out := kvOutput{unknown: true}
	ret := int64(math.MaxInt64)
	if op.ReturnNs != nil {
		if op.Output == nil {
			return porcupine.Operation{}, fmt.Errorf("return_ns without output")
		}
		if *op.ReturnNs < op.CallNs {
			return porcupine.Operation{}, fmt.Errorf("returns before it is called")
		}
		ret = *op.ReturnNs
		out = kvOutput{ok: op.Output.Ok, value: op.Output.Value}
	}
	return porcupine.Operation{
		ClientId: op.Client,
		Input:    in,
		Call:     op.CallNs,
		Output:   out,
		Return:   ret,
		Metadata: op.Meta,
	}, nil
}

// run checks every key, prints the verdict lines to w and returns the exit status.
func run(keys map[string][]porcupine.Operation, timeout time.Duration, htmlDir string, w io.Writer) int {
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	overall := Overall{Ok: true, Result: "ok", Keys: len(names), Illegal: []string{}, Unknown: []string{}}
	enc := json.NewEncoder(w)
	for _, key := range names {
		ops := keys[key]
		overall.Ops += len(ops)
		res, info := porcupine.CheckOperationsVerbose(kvModel, ops, timeout)
		v := KeyVerdict{Key: key, Ops: len(ops)}
		switch res {
		case porcupine.Ok:
			v.Result = "ok"
		case porcupine.Unknown:
			v.Result = "unknown"
			overall.Unknown = append(overall.Unknown, key)
		default:
			v.Result = "illegal"
			v.Detail = explain(ops, info)
			overall.Illegal = append(overall.Illegal, key)
			if htmlDir != "" {
				v.HTML = filepath.Join(htmlDir, safeName(key)+".html")
				if err := writeHTML(v.HTML, info); err != nil {
					v.HTML = "error: " + err.Error()
				}
			}
		}
		_ = enc.Encode(v)
	}
	code := 0
	switch {
	case len(overall.Illegal) > 0:
		overall.Ok, overall.Result, code = false, "illegal", 1
	case len(overall.Unknown) > 0:
		overall.Ok, overall.Result, code = false, "unknown", 3
	}
	_ = enc.Encode(overall)
	return code
}

// explain summarizes why a key is not linearizable: the end of the longest
// linearizable prefix porcupine found, and the earliest-returning operations
// that could not be placed after it.
func explain(ops []porcupine.Operation, info porcupine.LinearizationInfo) string {
	partials := info.PartialLinearizationsOperations()
	if len(partials) == 0 || len(partials[0]) == 0 {
		return "no partial linearization"
	}
	var longest []porcupine.Operation
	for _, p := range partials[0] {
		if len(p) > len(longest) {
			longest = p
		}
	}
	done := make(map[string]bool, len(longest))
	state := kvModel.Init()
	for _, op := range longest {
		done[ident(op)] = true
		_, state = kvModel.Step(state, op.Input, op.Output)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "longest linearizable prefix: %d of %d ops, ending in state %s; last:", len(longest), len(ops), kvModel.DescribeState(state))
	from := len(longest) - 3
	if from < 0 {
		from = 0
	}
	for _, op := range longest[from:] {
		fmt.Fprintf(&b, " [%s]", describe(op))
	}
	// The operations not in the prefix that returned first are the ones
	// that cannot be explained: each must take effect before it returns.
	var rest []porcupine.Operation
	for _, op := range ops {
		if !done[ident(op)] {
			rest = append(rest, op)
		}
	}
	sort.Slice(rest, func(i, j int) bool { return rest[i].Return < rest[j].Return })
	b.WriteString("; cannot linearize next:")
	if len(rest) > 3 {
		rest = rest[:3]
	}
	for _, op := range rest {
		fmt.Fprintf(&b, " [%s]", describe(op))
	}
	return b.String()
}

// ident identifies an operation within one key's history (client + call time
// is unique since a client runs one operation at a time).
func ident(op porcupine.Operation) string {
	return fmt.Sprintf("%d@%d", op.ClientId, op.Call)
}

// describe renders one operation with its client, times (ms) and metadata.
func describe(op porcupine.Operation) string {
	ret := "inf"
	if op.Return != math.MaxInt64 {
		ret = fmt.Sprintf("%.3f", float64(op.Return)/1e6)
	}
	s := fmt.Sprintf("c%d %s %.3f..%sms", op.ClientId, kvModel.DescribeOperation(op.Input, op.Output), float64(op.Call)/1e6, ret)
	if m, ok := op.Metadata.(string); ok && m != "" {
		s += " " + m
	}
	return s
}

// writeHTML writes porcupine's interactive visualization of one key.
func writeHTML(path string, info porcupine.LinearizationInfo) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return porcupine.VisualizePath(kvModel, info, path)
}

// safeName turns a key into a file name.
func safeName(key string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == os.PathSeparator || r == ' ' {
			return '_'
		}
		return r
	}, key)
}
