"""The leaders' review: tickets and dossiers by agency, category and week, for a period of months.

Modules: ``period`` (what was asked), ``rollups`` (kept current by triggers), ``queries`` (the
ticket tables and ``build_table``), ``dossiers``, ``satisfaction``, ``officials``,
``percentiles``, ``table`` (the shape), ``page`` and ``routes``.

Each table is one set-based query. Ticket figures come from rollups (migration 0005) that
statement triggers keep current: counts per local day, agency and category, and histograms of
office time per local month; ``refresh`` folds the triggers' pending changes in before a
review reads. Dossier indicators come from a rollup per local month and agency (migration
0012) whose changed rows ``refresh`` recomputes from the ``dossiers`` rows; "overdue now" is
counted on the open tickets and dossiers at the time asked, through partial indexes.

Definitions (also shown on the page):

Tickets (phản ánh), the cohort opened in the period:
  received        tickets opened in the period
  responded       of those, tickets a person has acted on (``first_response_at``)
  response        office hours from opening to that first action (``response_working_s``)
  resolved        tickets resolved (``resolved_at``; reopening takes one back out)
  resolution      office hours from opening to resolution, less the time spent waiting for
                  the citizen (``resolution_working_s``)
  medians, P90    exact (linear interpolation between the two nearest tickets, numpy's and
                  PostgreSQL percentile_cont's definition) for a row of at most
                  EXACT_GROUP_MAX tickets, read from those tickets; a larger row is read from
                  2 %-wide histogram bins: within 2 % of the value of the ticket at that rank,
                  and its ``percentiles`` column says "approximate"
  on-time rate    (early + on time) / resolved tickets that had a deadline (``sla_result``)
  overdue now     tickets of the cohort still open whose deadline has passed at the time asked

By official (one chosen agency; empty otherwise): the same ticket figures, exact, with the
  agency's tickets grouped by the official they are assigned to now (``assignee``; a transfer
  clears it), and a row for those not assigned

Dossiers (hồ sơ TTHC), the public-service indicators of Decision 766/QĐ-TTg:
  received        dossiers accepted (tiếp nhận, ``accepted_at``) in the period
  online rate     received online / received; split into partial (một phần) and full-process
                  (toàn trình) online, each a share of received
  online payment  received dossiers paid online / received dossiers that owed a fee (a fee
                  was requested, or it was paid online)
  digitised       received dossiers with their papers digitised / received
  finished        dossiers whose result was returned in the period; early, on time and late
                  are shares of them, the on-time rate is (early + on time) / finished
  processing time mean office time the finished dossiers used, in working days
  overdue now     received dossiers still being processed whose deadline has passed
  channels        only ``online`` (the public-service portal) counts as online; ``kiosk``
                  (24/7 self-service), ``bcci`` (public postal service), ``postal`` and
                  ``counter`` count as received, not online

Satisfaction (mức độ hài lòng), field reports and dossiers, ``satisfaction``:
  rated           ratings given in the period (``rated_at``), one per report or dossier: the
                  latest (``ioc.ratings``); 1-5 scores map 4-5 satisfied, 3 normal, 1-2 not
  share satisfied satisfied / rated ("normal" is in the whole, not the part); in all, per
                  agency, per category (reports) or procedure (dossiers); read from a monthly
                  rollup kept by a trigger on ``ratings`` (migration 0019)
"""
