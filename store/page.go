package store

import (
	"fmt"
	"strings"
)

// pageQuery builds a newest-first page of a listing: filters as numbered
// parameters ($1, $2, … in both dialects), then the order and the limit.
type pageQuery struct {
	where []string
	args  []any
}

// add filters by cond, a condition with one %d for its parameter's number.
func (p *pageQuery) add(cond string, v any) {
	p.args = append(p.args, v)
	p.where = append(p.where, fmt.Sprintf(cond, len(p.args)))
}

// sql returns base with the filters, orderBy and a limit of n (the page's
// default when n ≤ 0, never above most), and its arguments.
func (p *pageQuery) sql(base, orderBy string, n, def, most int) (string, []any) {
	if n <= 0 {
		n = def
	}
	q := base
	if len(p.where) > 0 {
		q += " WHERE " + strings.Join(p.where, " AND ")
	}
	args := append(p.args, min(n, most))
	return q + fmt.Sprintf(" ORDER BY %s LIMIT $%d", orderBy, len(args)), args
}
