/*
 * api_report_pdf — a report drawn as an A4 PDF (api_report_pdf.h).
 *
 * Why cairo-ft and fontconfig rather than cairo's toy text API or pango: the toy
 * API picks one font per string, and the usual "sans-serif" has no CJK glyphs; the
 * report's text is short single lines (no shaping, wrapping or bidi needed), so
 * one face that covers Latin and Japanese — Noto Sans CJK JP, found by
 * fontconfig — drawn with cairo_show_text is enough, and keeps pango out of the
 * daemon. cairo subsets the font and writes a ToUnicode map, so the text can be
 * searched and copied (pdftotext reads it).
 *
 * The pages are laid out twice: a first pass only counts the pages, so that the
 * second, which draws, can print "n / N" on each.
 *
 * Not for: reading the report, the HTTP reply (api_reports.c).
 */
#include "api/api_report_pdf.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cairo-ft.h>
#include <cairo-pdf.h>
#include <cairo.h>
#include <fontconfig/fontconfig.h>

#include "common/log.h"
#include "common/strbuf.h"
#include "common/xalloc.h"
#include "store/store.h"

/* A4 in points, its margins, and where the content goes between header and footer. */
#define PAGE_W	     595.28
#define PAGE_H	     841.89
#define MARGIN	     36.0
#define CONTENT_TOP  100.0
#define CONTENT_END  (PAGE_H - 48.0)
#define ROW_H	     13.0
#define TABLE_FONT   8.0
#define KEY_COL_W    166.0
#define NUM_COL_W    ((PAGE_W - 2 * MARGIN - KEY_COL_W) / STORE_REPORT_NCOUNTERS)
#define CHART_H	     200.0
#define CHART_BARS   10 /* a top-N report's chart: its first rows */
#define X_LABELS_MAX 12

/* The family asked of fontconfig: it covers Latin and Japanese. */
#define PDF_FONT_FAMILY "Noto Sans CJK JP"

static const char *const pdf_titles[STORE_REPORT_NREPORTS] = {
    "Overview",
    "Incoming mail by sender domain",
    "Incoming mail by client IP",
    "Sender groups",
    "Outgoing mail by destination",
    "Outgoing mail by sender",
    "Internal users",
    "Content filters",
    "Virus types",
    "Outbreak filters",
    "TLS connections",
    "Rate limits",
};

/* The report's title (system_capacity is not a rollup's report). */
static const char *pdf_title(const struct api_report_pdf *d)
{
	return d->cells != NULL || d->report >= STORE_REPORT_NREPORTS ? "System capacity"
								      : pdf_titles[d->report];
}

static const char *const pdf_columns[STORE_REPORT_NCOUNTERS] = {
    "Incoming", "Clean", "Spam", "Suspect", "Virus", "Filter", "Count"};

/* The classes stacked in the overview's bars, with their colours. */
static const struct {
	int counter;
	double r, g, b;
	const char *name;
} pdf_stack[] = {
    {STORE_REPORT_CLEAN, 0.30, 0.65, 0.35, "Clean"},
    {STORE_REPORT_SPAM, 0.85, 0.55, 0.15, "Spam"},
    {STORE_REPORT_SUSPECT, 0.95, 0.80, 0.25, "Suspect"},
    {STORE_REPORT_VIRUS, 0.80, 0.20, 0.20, "Virus"},
    {STORE_REPORT_CONTENT_FILTER, 0.45, 0.40, 0.75, "Filter"},
};
#define PDF_NSTACK (sizeof(pdf_stack) / sizeof(pdf_stack[0]))

/* ---- fonts ---- */

static pthread_once_t pdf_font_once = PTHREAD_ONCE_INIT;
/* One face, regular, kept for the process: cairo 1.16 embeds most of a CJK font's
 * shared subroutines with each subset (some 400 KB), so a bold face would double
 * every PDF; titles and headers stand out by size and shade instead. */
static cairo_font_face_t *pdf_face;

static cairo_font_face_t *pdf_font_load(void)
{
	FcPattern *pat = FcPatternCreate();
	FcPatternAddString(pat, FC_FAMILY, (const FcChar8 *)PDF_FONT_FAMILY);
	FcPatternAddInteger(pat, FC_WEIGHT, FC_WEIGHT_REGULAR);
	FcConfigSubstitute(NULL, pat, FcMatchPattern);
	FcDefaultSubstitute(pat);
	FcResult res;
	FcPattern *match = FcFontMatch(NULL, pat, &res);
	FcPatternDestroy(pat);
	if (match == NULL) {
		log_warn("report.pdf_font", "fontconfig has no font for \"%s\"", PDF_FONT_FAMILY);
		return cairo_toy_font_face_create("sans-serif", CAIRO_FONT_SLANT_NORMAL,
						  CAIRO_FONT_WEIGHT_NORMAL);
	}
	FcChar8 *family = NULL;
	if (FcPatternGetString(match, FC_FAMILY, 0, &family) != FcResultMatch ||
	    strstr((const char *)family, "CJK") == NULL)
		log_warn("report.pdf_font",
			 "fontconfig matched \"%s\" for \"%s\": Japanese text will not show "
			 "(install fonts-noto-cjk)",
			 family != NULL ? (const char *)family : "?", PDF_FONT_FAMILY);
	/* cairo keeps the pattern and opens the file itself, locking the FT_Face per use */
	cairo_font_face_t *face = cairo_ft_font_face_create_for_pattern(match);
	FcPatternDestroy(match);
	return face;
}

static void pdf_font_init(void)
{
	pdf_face = pdf_font_load();
}

/* ---- text ---- */

/* s as valid UTF-8 without control characters (each bad byte or control: U+FFFD). */
static char *pdf_clean(const char *s)
{
	struct strbuf b = STRBUF_INIT;
	const unsigned char *p = (const unsigned char *)s;
	strbuf_puts(&b, "");
	while (*p != '\0') {
		unsigned c = p[0];
		size_t n = c < 0x80		? 1
			   : (c & 0xe0) == 0xc0 ? 2
			   : (c & 0xf0) == 0xe0 ? 3
			   : (c & 0xf8) == 0xf0 ? 4
						: 0;
		uint32_t cp = n == 1 ? c : n == 2 ? c & 0x1f : n == 3 ? c & 0x0f : c & 0x07;
		size_t i = 1;
		for (; n > 1 && i < n && (p[i] & 0xc0) == 0x80; i++)
			cp = (cp << 6) | (p[i] & 0x3f);
		bool ok = n != 0 && i == n && !(n == 2 && cp < 0x80) && !(n == 3 && cp < 0x800) &&
			  !(n == 4 && (cp < 0x10000 || cp > 0x10ffff)) &&
			  !(cp >= 0xd800 && cp <= 0xdfff) && cp >= 0x20 && cp != 0x7f &&
			  !(cp >= 0x80 && cp < 0xa0);
		if (ok)
			strbuf_add(&b, p, n);
		else
			strbuf_puts(&b, "\xef\xbf\xbd");
		p += ok ? n : (n > 1 && i > 1 ? i : 1);
	}
	return strbuf_take(&b);
}

struct pdf {
	cairo_t *cr; /* NULL: the counting pass */
	const struct api_report_pdf *d;
	int page, npages;
	double y;
	char period[128];
	char gateways[160];
};

static void pdf_font(struct pdf *f, double size)
{
	cairo_set_font_face(f->cr, pdf_face);
	cairo_set_font_size(f->cr, size);
}

static double pdf_width(struct pdf *f, const char *s)
{
	cairo_text_extents_t e;
	cairo_text_extents(f->cr, s, &e);
	return e.x_advance;
}

/* Draws clean UTF-8 s at x, y (baseline): align 0 left, 1 right of x, 0.5 centred;
 * cut to max_w (> 0) with an ellipsis. */
static void pdf_text(struct pdf *f, double x, double y, double align, double max_w, const char *s)
{
	char *t = NULL;
	if (max_w > 0 && pdf_width(f, s) > max_w) {
		/* the longest prefix (at a character's start) that fits with "…" */
		size_t len = strlen(s), lo = 0, hi = len;
		t = xmalloc(len + 4);
		while (lo < hi) {
			size_t mid = (lo + hi + 1) / 2;
			while (mid > 0 && ((unsigned char)s[mid] & 0xc0) == 0x80)
				mid--;
			if (mid <= lo) {
				hi = lo;
				break;
			}
			memcpy(t, s, mid);
			memcpy(t + mid, "\xe2\x80\xa6", 4);
			if (pdf_width(f, t) <= max_w)
				lo = mid;
			else
				hi = mid - 1;
		}
		memcpy(t, s, lo);
		memcpy(t + lo, "\xe2\x80\xa6", 4);
		s = t;
	}
	cairo_move_to(f->cr, x - align * pdf_width(f, s), y);
	cairo_show_text(f->cr, s);
	free(t);
}

static void pdf_rgb(struct pdf *f, double r, double g, double b)
{
	cairo_set_source_rgb(f->cr, r, g, b);
}

/* ---- pages ---- */

static void pdf_page_head(struct pdf *f)
{
	cairo_t *cr = f->cr;
	char n[48];
	pdf_rgb(f, 0, 0, 0);
	pdf_font(f, 16);
	pdf_text(f, MARGIN, MARGIN + 14, 0, 0, pdf_title(f->d));
	pdf_font(f, 9);
	pdf_text(f, MARGIN, MARGIN + 32, 0, 0, f->period);
	pdf_text(f, MARGIN, MARGIN + 45, 0, 0, f->gateways);
	pdf_rgb(f, 0.6, 0.6, 0.6);
	cairo_set_line_width(cr, 0.5);
	cairo_move_to(cr, MARGIN, MARGIN + 52);
	cairo_line_to(cr, PAGE_W - MARGIN, MARGIN + 52);
	cairo_stroke(cr);
	pdf_rgb(f, 0.3, 0.3, 0.3);
	pdf_font(f, 8);
	pdf_text(f, MARGIN, PAGE_H - 24, 0, 0, "Lazaret");
	snprintf(n, sizeof(n), "%d / %d", f->page, f->npages);
	pdf_text(f, PAGE_W / 2, PAGE_H - 24, 0.5, 0, n);
}

/* Starts a page (the first one too). */
static void pdf_new_page(struct pdf *f)
{
	if (f->page > 0 && f->cr != NULL)
		cairo_show_page(f->cr);
	f->page++;
	f->y = CONTENT_TOP;
	if (f->cr != NULL)
		pdf_page_head(f);
}

/* Makes room for h points below y, on a new page if need be; true when it broke. */
static bool pdf_room(struct pdf *f, double h)
{
	if (f->y + h <= CONTENT_END)
		return false;
	pdf_new_page(f);
	return true;
}

static void pdf_heading(struct pdf *f, const char *s)
{
	pdf_room(f, 20 + 2 * ROW_H);
	if (f->cr != NULL) {
		pdf_rgb(f, 0, 0, 0);
		pdf_font(f, 11);
		pdf_text(f, MARGIN, f->y + 11, 0, 0, s);
	}
	f->y += 18;
}

static void pdf_table_header(struct pdf *f, const char *first)
{
	if (f->cr != NULL) {
		cairo_t *cr = f->cr;
		pdf_rgb(f, 0.92, 0.93, 0.95);
		cairo_rectangle(cr, MARGIN, f->y, PAGE_W - 2 * MARGIN, ROW_H);
		cairo_fill(cr);
		pdf_rgb(f, 0, 0, 0);
		pdf_font(f, TABLE_FONT);
		pdf_text(f, MARGIN + 3, f->y + ROW_H - 3.5, 0, KEY_COL_W - 6, first);
		for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++) {
			const char *name = pdf_columns[j];
			if (j == STORE_REPORT_COUNT && f->d->report == STORE_REPORT_OVERVIEW)
				name = "Rejected";
			pdf_text(f, MARGIN + KEY_COL_W + (j + 1) * NUM_COL_W - 3,
				 f->y + ROW_H - 3.5, 1, NUM_COL_W - 4, name);
		}
	}
	f->y += ROW_H;
}

/* A table row's background (the total's colour, or every other row's stripe), and
 * the pen for its text. */
static void pdf_row_start(struct pdf *f, bool total, size_t stripe)
{
	if (total || stripe % 2 == 1) {
		if (total)
			pdf_rgb(f, 0.88, 0.93, 0.98);
		else
			pdf_rgb(f, 0.97, 0.97, 0.98);
		cairo_rectangle(f->cr, MARGIN, f->y, PAGE_W - 2 * MARGIN, ROW_H);
		cairo_fill(f->cr);
	}
	pdf_rgb(f, 0, 0, 0);
	pdf_font(f, TABLE_FONT);
}

/* A row of a table whose header is first; a new page repeats the header. */
static void pdf_table_row(struct pdf *f, const char *first, const char *key, const int64_t *c,
			  bool total, size_t stripe)
{
	if (pdf_room(f, ROW_H))
		pdf_table_header(f, first);
	if (f->cr != NULL) {
		pdf_row_start(f, total, stripe);
		pdf_text(f, MARGIN + 3, f->y + ROW_H - 3.5, 0, KEY_COL_W - 6, key);
		for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++) {
			char num[24];
			snprintf(num, sizeof(num), "%lld", (long long)c[j]);
			pdf_text(f, MARGIN + KEY_COL_W + (j + 1) * NUM_COL_W - 3,
				 f->y + ROW_H - 3.5, 1, 0, num);
		}
	}
	f->y += ROW_H;
}

/* A text table's first column (a bucket's start), narrower than a key's. */
#define CELL_KEY_W 84.0

/* The width of a text table's column after its first. */
static double pdf_cell_w(const struct pdf *f)
{
	return (PAGE_W - 2 * MARGIN - CELL_KEY_W) / (double)(f->d->ncols > 0 ? f->d->ncols : 1);
}

/* A text table's header (system_capacity). */
static void pdf_cells_header(struct pdf *f, const char *first)
{
	if (f->cr != NULL) {
		cairo_t *cr = f->cr;
		pdf_rgb(f, 0.92, 0.93, 0.95);
		cairo_rectangle(cr, MARGIN, f->y, PAGE_W - 2 * MARGIN, ROW_H);
		cairo_fill(cr);
		pdf_rgb(f, 0, 0, 0);
		pdf_font(f, TABLE_FONT);
		pdf_text(f, MARGIN + 3, f->y + ROW_H - 3.5, 0, CELL_KEY_W - 6, first);
		for (size_t j = 0; j < f->d->ncols; j++)
			pdf_text(f, MARGIN + CELL_KEY_W + (double)(j + 1) * pdf_cell_w(f) - 3,
				 f->y + ROW_H - 3.5, 1, pdf_cell_w(f) - 4, f->d->columns[j]);
	}
	f->y += ROW_H;
}

/* A text table's row: key, then the ncols cells c; a new page repeats the header. */
static void pdf_cells_row(struct pdf *f, const char *first, const char *key, const char *const *c,
			  bool total, size_t stripe)
{
	if (pdf_room(f, ROW_H))
		pdf_cells_header(f, first);
	if (f->cr != NULL) {
		pdf_row_start(f, total, stripe);
		pdf_text(f, MARGIN + 3, f->y + ROW_H - 3.5, 0, CELL_KEY_W - 6, key);
		for (size_t j = 0; j < f->d->ncols; j++)
			pdf_text(f, MARGIN + CELL_KEY_W + (double)(j + 1) * pdf_cell_w(f) - 3,
				 f->y + ROW_H - 3.5, 1, 0, c[j]);
	}
	f->y += ROW_H;
}

/* The UTC time ms as fmt (strftime; one of this file's constants). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static void pdf_time(int64_t ms, const char *fmt, char *out, size_t size)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	if (strftime(out, size, fmt, &tm) == 0)
		out[0] = '\0';
}
#pragma GCC diagnostic pop

static const char *pdf_bucket_fmt(int gran)
{
	return gran == STORE_REPORT_HOUR  ? "%Y-%m-%d %H:00"
	       : gran == STORE_REPORT_DAY ? "%Y-%m-%d"
					  : "%Y-%m";
}

/* The step between axis ticks for values up to max: 1, 2 or 5 times a power of ten. */
static double pdf_tick(double max)
{
	double raw = max / 5, p = pow(10, floor(log10(raw)));
	return raw <= p ? p : raw <= 2 * p ? 2 * p : raw <= 5 * p ? 5 * p : 10 * p;
}

/* The value axis of a chart whose largest value is max: its top *amax and the step
 * between its labels *tick, whole numbers (counts have no fractions). */
static void pdf_axis(double max, double *amax, double *tick)
{
	if (max < 1)
		max = 1;
	*tick = pdf_tick(max < 5 ? 5 : max); /* >= 1 */
	*amax = ceil(max / *tick) * *tick;
}

/* The overview's chart: per bucket a bar of its classes stacked, and a legend. */
static void pdf_series_chart(struct pdf *f)
{
	const struct api_report_pdf *d = f->d;
	double x0 = MARGIN + 34, x1 = PAGE_W - MARGIN, top = f->y + 24, bot = f->y + CHART_H;
	if (f->cr == NULL || d->n == 0) {
		f->y += CHART_H + 30;
		return;
	}
	cairo_t *cr = f->cr;
	double max = 0;
	for (size_t i = 0; i < d->n; i++) {
		double s = 0;
		for (size_t k = 0; k < PDF_NSTACK; k++)
			s += (double)d->rows[i].c[pdf_stack[k].counter];
		max = s > max ? s : max;
	}
	double amax, tick;
	pdf_axis(max, &amax, &tick);
	/* the legend */
	pdf_font(f, 8);
	double lx = x0;
	for (size_t k = 0; k < PDF_NSTACK; k++) {
		pdf_rgb(f, pdf_stack[k].r, pdf_stack[k].g, pdf_stack[k].b);
		cairo_rectangle(cr, lx, f->y + 2, 8, 8);
		cairo_fill(cr);
		pdf_rgb(f, 0, 0, 0);
		pdf_text(f, lx + 11, f->y + 9.5, 0, 0, pdf_stack[k].name);
		lx += 60;
	}
	/* grid and value labels */
	cairo_set_line_width(cr, 0.4);
	for (double v = 0; v <= amax + tick / 2; v += tick) {
		double y = bot - (bot - top) * v / amax;
		char num[24];
		pdf_rgb(f, 0.85, 0.85, 0.85);
		cairo_move_to(cr, x0, y);
		cairo_line_to(cr, x1, y);
		cairo_stroke(cr);
		pdf_rgb(f, 0.3, 0.3, 0.3);
		snprintf(num, sizeof(num), "%.0f", v);
		pdf_text(f, x0 - 4, y + 3, 1, 0, num);
	}
	double slot = (x1 - x0) / (double)d->n, bw = slot * 0.7;
	for (size_t i = 0; i < d->n; i++) {
		double x = x0 + slot * (double)i + (slot - bw) / 2, y = bot;
		for (size_t k = 0; k < PDF_NSTACK; k++) {
			double h = (bot - top) * (double)d->rows[i].c[pdf_stack[k].counter] / amax;
			if (h <= 0)
				continue;
			pdf_rgb(f, pdf_stack[k].r, pdf_stack[k].g, pdf_stack[k].b);
			cairo_rectangle(cr, x, y - h, bw, h);
			cairo_fill(cr);
			y -= h;
		}
	}
	/* bucket labels, at most X_LABELS_MAX of them */
	size_t every = (d->n + X_LABELS_MAX - 1) / X_LABELS_MAX;
	const char *fmt = d->gran == STORE_REPORT_HOUR	? "%H:00"
			  : d->gran == STORE_REPORT_DAY ? "%m-%d"
							: "%Y-%m";
	pdf_rgb(f, 0.3, 0.3, 0.3);
	pdf_font(f, 7);
	for (size_t i = 0; i < d->n; i += every) {
		char label[32];
		pdf_time(d->rows[i].at, fmt, label, sizeof(label));
		pdf_text(f, x0 + slot * ((double)i + 0.5), bot + 10, 0.5, 0, label);
	}
	f->y += CHART_H + 30;
}

/* A top-N report's chart: its first rows as horizontal bars of metric. */
static void pdf_rows_chart(struct pdf *f, int metric)
{
	const struct api_report_pdf *d = f->d;
	size_t n = d->n < CHART_BARS ? d->n : CHART_BARS;
	double h = 14.0 * (double)n + 24;
	if (n == 0)
		return;
	if (f->cr == NULL) {
		f->y += h + 16;
		return;
	}
	cairo_t *cr = f->cr;
	double x0 = MARGIN + 150, x1 = PAGE_W - MARGIN - 40, max = 0;
	for (size_t i = 0; i < n; i++)
		max = (double)d->rows[i].c[metric] > max ? (double)d->rows[i].c[metric] : max;
	if (max < 1)
		max = 1;
	pdf_font(f, 8);
	pdf_rgb(f, 0.3, 0.3, 0.3);
	pdf_text(f, x0, f->y + 9, 0, 0, metric == STORE_REPORT_COUNT ? "Count" : "Incoming");
	for (size_t i = 0; i < n; i++) {
		double y = f->y + 16 + 14.0 * (double)i;
		double w = (x1 - x0) * (double)d->rows[i].c[metric] / max;
		char *key = pdf_clean(d->rows[i].key != NULL ? d->rows[i].key : "");
		pdf_rgb(f, 0, 0, 0);
		pdf_text(f, x0 - 6, y + 9, 1, 140, key);
		free(key);
		pdf_rgb(f, 0.25, 0.45, 0.75);
		cairo_rectangle(cr, x0, y + 1, w > 0.5 ? w : 0.5, 10);
		cairo_fill(cr);
	}
	f->y += h + 16;
}

/* Lays out (and, with f->cr, draws) every page. */
static void pdf_layout(struct pdf *f)
{
	const struct api_report_pdf *d = f->d;
	f->page = 0;
	pdf_new_page(f);
	const char *first = d->gran == STORE_REPORT_HOUR  ? "Hour (UTC)"
			    : d->gran == STORE_REPORT_DAY ? "Day (UTC)"
							  : "Month (UTC)";
	if (d->cells != NULL) {
		/* system_capacity: the totals, then a row per bucket */
		size_t w = 1 + d->ncols;
		pdf_heading(f, "Totals");
		pdf_cells_header(f, "");
		pdf_cells_row(f, "", "Total", d->cells + d->n * w + 1, true, 0);
		f->y += 16;
		pdf_heading(f, d->gran == STORE_REPORT_HOUR  ? "By hour"
			       : d->gran == STORE_REPORT_DAY ? "By day"
							     : "By month");
		pdf_cells_header(f, first);
		for (size_t i = 0; i < d->n; i++) {
			char at[40];
			pdf_time(strtoll(d->cells[i * w], NULL, 10), pdf_bucket_fmt(d->gran), at,
				 sizeof(at));
			pdf_cells_row(f, first, at, d->cells + i * w + 1, false, i);
		}
		return;
	}
	if (d->report == STORE_REPORT_OVERVIEW) {
		int64_t tot[STORE_REPORT_NCOUNTERS] = {0};
		for (size_t i = 0; i < d->n; i++)
			for (int j = 0; j < STORE_REPORT_NCOUNTERS; j++)
				tot[j] += d->rows[i].c[j];
		pdf_series_chart(f);
		pdf_heading(f, "Totals");
		pdf_table_header(f, "");
		pdf_table_row(f, "", "Total", tot, true, 0);
		f->y += 16;
		pdf_heading(f, d->gran == STORE_REPORT_HOUR  ? "By hour"
			       : d->gran == STORE_REPORT_DAY ? "By day"
							     : "By month");
		pdf_table_header(f, first);
		for (size_t i = 0; i < d->n; i++) {
			char at[40];
			pdf_time(d->rows[i].at, pdf_bucket_fmt(d->gran), at, sizeof(at));
			pdf_table_row(f, first, at, d->rows[i].c, false, i);
		}
		return;
	}
	/* the reports that count sessions or refusals rather than messages */
	int metric = STORE_REPORT_INCOMING;
	int64_t incoming = 0, count = 0;
	for (size_t i = 0; i < d->n; i++) {
		incoming += d->rows[i].c[STORE_REPORT_INCOMING];
		count += d->rows[i].c[STORE_REPORT_COUNT];
	}
	if (incoming == 0 && count > 0)
		metric = STORE_REPORT_COUNT;
	pdf_rows_chart(f, metric);
	pdf_heading(f, "Rows");
	pdf_table_header(f, "Key");
	if (d->n == 0 && f->cr != NULL) {
		pdf_font(f, TABLE_FONT);
		pdf_rgb(f, 0.3, 0.3, 0.3);
		pdf_text(f, MARGIN + 3, f->y + ROW_H - 3.5, 0, 0, "No rows in this period.");
	}
	for (size_t i = 0; i < d->n; i++) {
		char *key = pdf_clean(d->rows[i].key != NULL ? d->rows[i].key : "");
		pdf_table_row(f, "Key", key, d->rows[i].c, false, i);
		free(key);
	}
}

static cairo_status_t pdf_write(void *arg, const unsigned char *data, unsigned int len)
{
	strbuf_add(arg, data, len);
	return CAIRO_STATUS_SUCCESS;
}

int api_report_pdf_render(const struct api_report_pdf *d, unsigned char **out, size_t *len)
{
	struct pdf f = {.d = d};
	struct strbuf b = STRBUF_INIT;
	char from[40], to[40];
	pthread_once(&pdf_font_once, pdf_font_init);
	pdf_time(d->since, "%Y-%m-%d %H:%M", from, sizeof(from));
	pdf_time(d->until, "%Y-%m-%d %H:%M", to, sizeof(to));
	snprintf(f.period, sizeof(f.period), "Period: %s \xe2\x80\x93 %s UTC (%s)", from, to,
		 d->period);
	snprintf(f.gateways, sizeof(f.gateways), "Gateway: %s",
		 d->gateway != NULL ? d->gateway : "all gateways");
	pdf_layout(&f); /* counts the pages */
	f.npages = f.page;

	cairo_surface_t *s = cairo_pdf_surface_create_for_stream(pdf_write, &b, PAGE_W, PAGE_H);
	char title[200];
	snprintf(title, sizeof(title), "Lazaret report: %s", pdf_title(d));
	cairo_pdf_surface_set_metadata(s, CAIRO_PDF_METADATA_TITLE, title);
	cairo_pdf_surface_set_metadata(s, CAIRO_PDF_METADATA_CREATOR, "Lazaret");
	f.cr = cairo_create(s);
	pdf_layout(&f);
	if (f.page != f.npages)
		panic("api_report_pdf: %d pages drawn, %d counted", f.page, f.npages);
	cairo_show_page(f.cr);
	cairo_status_t st = cairo_status(f.cr);
	cairo_destroy(f.cr);
	cairo_surface_finish(s);
	if (st == CAIRO_STATUS_SUCCESS)
		st = cairo_surface_status(s);
	cairo_surface_destroy(s);
	if (st != CAIRO_STATUS_SUCCESS) {
		log_warn("report.pdf_failed", "cairo: %s", cairo_status_to_string(st));
		strbuf_free(&b);
		return -EIO;
	}
	*len = b.len;
	*out = (unsigned char *)strbuf_take(&b);
	return 0;
}

char *api_report_pdf_filename(const struct api_report_pdf *d)
{
	char day[16];
	struct strbuf b = STRBUF_INIT;
	pdf_time(d->since, "%Y%m%d", day, sizeof(day));
	strbuf_printf(&b, "lazaret-%s-%s-%s",
		      d->cells != NULL ? "system_capacity" : store_report_names[d->report],
		      d->period, d->gateway != NULL ? d->gateway : "all");
	strbuf_printf(&b, "-%s.pdf", day);
	for (char *p = b.p; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '_'))
			*p = '_';
	return strbuf_take(&b);
}
