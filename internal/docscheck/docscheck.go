// Package docscheck keeps the chapters honest: every Go excerpt a chapter
// quotes must still be in the file it names, every relative link must lead
// somewhere, and every Go listing must be gofmt-clean. Its test runs the
// check over README.md and docs/*.md, so `go test ./...` fails the moment a
// step's code moves away from the chapter that teaches it.
//
// An excerpt is a ```go fence whose previous line is a marker naming the
// file it is cut from, relative to the repository root:
//
//	<!-- from: step1_sequential/server.go -->
//	```go
//	... lines copied verbatim, tabs and all ...
//	```
//
// To leave lines out, quote two blocks, each with its own marker.
package docscheck

import (
	"bytes"
	"fmt"
	"go/format"
	"io/fs"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// problem is one thing to fix, at a line of a Markdown file.
type problem struct {
	file string // slash path relative to the repository root
	line int    // 1-based
	msg  string // what is wrong and what to do about it
}

func (p problem) String() string { return fmt.Sprintf("%s:%d: %s", p.file, p.line, p.msg) }

// fence is one fenced code block of a Markdown file.
type fence struct {
	lang     string
	line     int      // line of the opening fence
	body     []string // the lines between the fences, fence indentation removed
	from     string   // the file named by the marker above it, if any
	complete bool     // the closing fence was found
}

// link is one relative link destination, as written.
type link struct {
	line int
	dest string
}

// doc is what the checks need from one Markdown file.
type doc struct {
	fences   []fence
	links    []link
	slugs    map[string]bool // heading anchors, GitHub style
	problems []problem       // markers that mark nothing
}

var (
	fenceOpen  = regexp.MustCompile("^( {0,3})(`{3,}|~{3,})\\s*([^`\\s]*)")
	fromMarker = regexp.MustCompile(`^\s*<!--\s*from:\s*(\S+)\s*-->\s*$`)
	atxHeading = regexp.MustCompile(`^ {0,3}(#{1,6})(?:\s+(.*?))?\s*$`)
	inlineLink = regexp.MustCompile(`\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^()\s]+)(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)`)
	refDef     = regexp.MustCompile(`^ {0,3}\[[^\]]+\]:\s+(<[^>]*>|\S+)`)
	codeSpan   = regexp.MustCompile("(`+)[^`].*?(?:`+)")
	htmlTag    = regexp.MustCompile(`<[^>]*>`)
	urlScheme  = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)
	lineAnchor = regexp.MustCompile(`^L\d+(-L\d+)?$`)
)

// parse splits a Markdown file into what the checks look at: fenced blocks
// (with their from-markers), relative link destinations outside code, and
// the anchors its headings get on GitHub.
func parse(name, src string) *doc {
	d := &doc{slugs: map[string]bool{}}
	lines := strings.Split(strings.ReplaceAll(src, "\r\n", "\n"), "\n")
	seen := map[string]int{} // slug -> how many headings already have it
	pendingFrom, fromLine := "", 0
	for i := 0; i < len(lines); i++ {
		ln := lines[i]
		if m := fenceOpen.FindStringSubmatch(ln); m != nil {
			f := fence{lang: strings.ToLower(m[3]), line: i + 1}
			if pendingFrom != "" && fromLine == i {
				f.from = pendingFrom
			}
			indent, marker := len(m[1]), m[2]
			for i++; i < len(lines); i++ {
				if closesFence(lines[i], marker) {
					f.complete = true
					break
				}
				f.body = append(f.body, dedent(lines[i], indent))
			}
			d.fences = append(d.fences, f)
			pendingFrom = ""
			continue
		}
		if pendingFrom != "" {
			d.problems = append(d.problems, problem{name, fromLine,
				"from-marker is not directly followed by a ```go fence: put the marker on the line right before the fence"})
			pendingFrom = ""
		}
		if m := fromMarker.FindStringSubmatch(ln); m != nil {
			pendingFrom, fromLine = m[1], i+1
			continue
		}
		if m := atxHeading.FindStringSubmatch(ln); m != nil {
			s := slug(m[2])
			if n := seen[s]; n > 0 {
				d.slugs[fmt.Sprintf("%s-%d", s, n)] = true
			} else {
				d.slugs[s] = true
			}
			seen[s]++
		}
		if m := refDef.FindStringSubmatch(ln); m != nil {
			d.links = append(d.links, link{i + 1, strings.Trim(m[1], "<>")})
			continue
		}
		for _, m := range inlineLink.FindAllStringSubmatch(codeSpan.ReplaceAllString(ln, ""), -1) {
			d.links = append(d.links, link{i + 1, strings.Trim(m[1], "<>")})
		}
	}
	if pendingFrom != "" {
		d.problems = append(d.problems, problem{name, fromLine,
			"from-marker at the end of the file marks nothing: put a ```go fence right after it"})
	}
	return d
}

// closesFence reports whether ln closes a fence opened with marker: the same
// character, at least as many of it, nothing else on the line.
func closesFence(ln, marker string) bool {
	t := strings.TrimLeft(ln, " ")
	if len(ln)-len(t) > 3 {
		return false
	}
	n := len(t) - len(strings.TrimLeft(t, marker[:1]))
	return n >= len(marker) && strings.TrimSpace(t[n:]) == ""
}

// dedent removes up to n leading spaces, as CommonMark does for the content
// of a fence indented by n.
func dedent(s string, n int) string {
	for n > 0 && strings.HasPrefix(s, " ") {
		s, n = s[1:], n-1
	}
	return s
}

// slug is the anchor GitHub gives a heading: the text as rendered, lower
// case, spaces turned into hyphens, every other character that is not a
// letter, digit, hyphen or underscore dropped. Duplicates get -1, -2, ...
// from the caller.
func slug(heading string) string {
	// A closing run of #s is not part of the heading.
	if t := strings.TrimRight(heading, "#"); t != heading && (t == "" || strings.HasSuffix(t, " ")) {
		heading = strings.TrimSpace(t)
	}
	// Links and images render as their text.
	heading = inlineLink.ReplaceAllStringFunc(heading, func(m string) string {
		return m[strings.Index(m, "[")+1 : strings.LastIndex(m, "](")]
	})
	heading = htmlTag.ReplaceAllString(heading, "")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.M, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// check runs every check on the Markdown files names (slash paths) of fsys,
// the repository root, and returns the problems in file order.
func check(fsys fs.FS, names []string) []problem {
	docs := map[string]*doc{}
	load := func(name string) (*doc, error) {
		if d, ok := docs[name]; ok {
			return d, nil
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		d := parse(name, string(b))
		docs[name] = d
		return d, nil
	}
	var out []problem
	for _, name := range names {
		d, err := load(name)
		if err != nil {
			out = append(out, problem{name, 1, err.Error()})
			continue
		}
		out = append(out, d.problems...)
		for _, f := range d.fences {
			out = append(out, checkFence(fsys, name, f)...)
		}
		for _, l := range d.links {
			if p := checkLink(fsys, name, l, load); p != "" {
				out = append(out, problem{name, l.line, p})
			}
		}
	}
	return out
}

// checkFence checks one fenced block: an unclosed fence, an excerpt that is
// no longer in its file, Go that gofmt would change.
func checkFence(fsys fs.FS, name string, f fence) []problem {
	at := func(format string, args ...any) []problem {
		return []problem{{name, f.line, fmt.Sprintf(format, args...)}}
	}
	if !f.complete {
		return at("code fence is never closed: add a closing fence")
	}
	if f.from != "" {
		if f.lang != "go" {
			return at("from-marker above a %q fence: only ```go excerpts are checked; make it ```go or drop the marker", f.lang)
		}
		return checkExcerpt(fsys, name, f)
	}
	if f.lang == "go" && isCompleteFile(f.body) {
		src := strings.Join(f.body, "\n") + "\n"
		got, err := format.Source([]byte(src))
		if err != nil {
			return at("Go listing does not parse (%v): fix it, or mark it as an excerpt of a real file", err)
		}
		if !bytes.Equal(got, []byte(src)) {
			gl := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
			i := firstDiff(f.body, gl)
			want := ""
			if i < len(gl) {
				want = gl[i]
			}
			return []problem{{name, f.line + 1 + i, fmt.Sprintf(
				"Go listing is not gofmt-clean: gofmt makes this line %q (it is %q); run the listing through gofmt and paste it back",
				want, lineAt(f.body, i))}}
		}
	}
	return nil
}

// isCompleteFile says whether a Go block is a whole file (it has a package
// clause), as opposed to a fragment that gofmt cannot judge alone.
func isCompleteFile(body []string) bool {
	for _, l := range body {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "//") {
			continue
		}
		return strings.HasPrefix(t, "package ")
	}
	return false
}

// checkExcerpt checks that the block's lines appear, contiguous and
// verbatim, in the file the marker names, and that file is gofmt-clean (so
// the excerpt is too).
func checkExcerpt(fsys fs.FS, name string, f fence) []problem {
	at := func(line int, format string, args ...any) []problem {
		return []problem{{name, line, fmt.Sprintf(format, args...)}}
	}
	src := path.Clean(strings.TrimPrefix(f.from, "/"))
	if !fs.ValidPath(src) {
		return at(f.line-1, "from-marker path %q leaves the repository: name the file relative to the repository root", f.from)
	}
	b, err := fs.ReadFile(fsys, src)
	if err != nil {
		return at(f.line-1, "from-marker names %s, which cannot be read (%v): fix the path (relative to the repository root)", src, err)
	}
	if len(f.body) == 0 {
		return at(f.line, "excerpt from %s is empty: paste the lines you mean to quote", src)
	}
	text := strings.ReplaceAll(string(b), "\r\n", "\n")
	file := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	start, matched := bestMatch(file, f.body)
	if matched < len(f.body) {
		if matched == 0 {
			return at(f.line+1, "excerpt from %s: its first line %q is not a line of that file; copy the block again from the file",
				src, f.body[0])
		}
		return at(f.line+1+matched,
			"excerpt from %s stops matching here: the doc has %q but %s:%d is %q; copy the block again from the file (or quote two blocks to skip lines)",
			src, f.body[matched], src, start+matched+1, lineAt(file, start+matched))
	}
	if got, err := format.Source(b); err == nil && !bytes.Equal(got, b) {
		return at(f.line-1, "%s is not gofmt-clean, so neither is this excerpt: run gofmt -w %s", src, src)
	}
	return nil
}

// bestMatch finds where in file the longest run of excerpt's leading lines
// appears, to say exactly which line stopped matching.
func bestMatch(file, excerpt []string) (start, matched int) {
	for i := range file {
		n := 0
		for n < len(excerpt) && i+n < len(file) && file[i+n] == excerpt[n] {
			n++
		}
		if n > matched {
			start, matched = i, n
			if n == len(excerpt) {
				break
			}
		}
	}
	return start, matched
}

func firstDiff(a, b []string) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

func lineAt(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "(end of file)"
}

// checkLink checks one link destination written in file name: a URL with a
// scheme is not ours to check; anything else must name a file or directory
// of the repository, and an anchor into Markdown must match a heading.
func checkLink(fsys fs.FS, name string, l link, load func(string) (*doc, error)) string {
	dest := l.dest
	if urlScheme.MatchString(dest) {
		return ""
	}
	target, anchor, _ := strings.Cut(dest, "#")
	if p, err := url.PathUnescape(target); err == nil {
		target = p
	}
	var resolved string
	switch {
	case target == "":
		resolved = name
	case strings.HasPrefix(target, "/"):
		resolved = path.Clean(strings.TrimPrefix(target, "/"))
	default:
		resolved = path.Join(path.Dir(name), target)
	}
	if !fs.ValidPath(resolved) {
		return fmt.Sprintf("link %q leads outside the repository: link to a file inside it, or use a full URL", dest)
	}
	st, err := fs.Stat(fsys, resolved)
	if err != nil {
		return fmt.Sprintf("link %q: %s does not exist: fix the path (it is relative to %s)", dest, resolved, path.Dir(name))
	}
	if anchor == "" || st.IsDir() {
		return ""
	}
	if !strings.HasSuffix(resolved, ".md") {
		if lineAnchor.MatchString(anchor) {
			return ""
		}
		return fmt.Sprintf("link %q: anchor #%s into a non-Markdown file: only #L12 or #L12-L20 line anchors work there", dest, anchor)
	}
	d, err := load(resolved)
	if err != nil {
		return fmt.Sprintf("link %q: %v", dest, err)
	}
	if a, err := url.PathUnescape(anchor); err == nil {
		anchor = a
	}
	if !d.slugs[strings.ToLower(anchor)] {
		return fmt.Sprintf("link %q: %s has no heading with anchor #%s (anchors there: %s)", dest, resolved, anchor, anchorList(d))
	}
	return ""
}

func anchorList(d *doc) string {
	var s []string
	for k := range d.slugs {
		s = append(s, "#"+k)
	}
	slices.Sort(s)
	if len(s) > 12 {
		s = append(s[:12], "...")
	}
	return strings.Join(s, " ")
}
