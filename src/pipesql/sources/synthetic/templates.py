"""The question templates and how often each is drawn.

Each template (`Template`: database and RNG in, question/SQL `Pair` out) phrases one construct
several ways. Values come from the rows, so filters match; every literal of the gold SQL appears
verbatim in the question (the LIMIT 1 of "the oldest" aside), so a model can learn to copy them.
"""

from __future__ import annotations

from pipesql.sources.synthetic.analytics import (
    case_label,
    cte_above_average_count,
    cte_filtered_groups,
    cte_top_per_group,
    window_partition_average,
    window_rank,
    window_running_total,
)
from pipesql.sources.synthetic.common import Template
from pipesql.sources.synthetic.joins import (
    join_aggregate,
    join_filter_attribute,
    join_filter_parent,
    join_group_count,
    join_having,
    join_project,
    join_superlative,
    join_top,
    join_two_parents,
    link_count,
    link_filter,
    self_join,
)
from pipesql.sources.synthetic.nested import (
    derived_average_count,
    derived_group_total,
    derived_join,
    except_group,
    except_join,
    exists,
    intersect,
    intersect_join,
    nested_in,
    nested_not_in,
    scalar_average,
    scalar_group_max,
    union,
    union_join,
)
from pipesql.sources.synthetic.single_table import (
    aggregate,
    aggregate_many,
    count_all,
    count_distinct,
    count_filter,
    distinct_values,
    filter_and,
    filter_between,
    filter_in,
    filter_like,
    filter_null,
    filter_or,
    filter_rows,
    group_aggregate,
    group_count,
    group_having,
    group_top,
    group_two_keys,
    lookup,
    order_all,
    project_columns,
    project_label,
    superlative,
    top_k,
)

# Weights lean towards the simple constructs, as Spider's training set does.
TEMPLATES: tuple[tuple[Template, float], ...] = (
    (project_label, 2), (project_columns, 3), (count_all, 2), (lookup, 3),
    (filter_rows, 5), (count_filter, 3), (filter_and, 3), (filter_or, 2), (filter_like, 2),
    (filter_between, 2), (filter_in, 2), (filter_null, 2), (aggregate, 3), (aggregate_many, 1),
    (distinct_values, 2), (count_distinct, 1.5), (top_k, 2), (superlative, 2.5), (order_all, 2),
    (group_count, 2), (group_aggregate, 2), (group_having, 2), (group_top, 1.5),
    (group_two_keys, 1),
    (join_project, 2.5), (join_filter_parent, 3), (join_filter_attribute, 2.5),
    (join_group_count, 2), (join_having, 2), (join_top, 2.5), (join_superlative, 2.5),
    (join_aggregate, 1.5), (join_two_parents, 1.5), (link_filter, 3), (link_count, 1.5),
    (self_join, 2),
    (nested_in, 2), (nested_not_in, 2), (exists, 1.5), (scalar_average, 2),
    (scalar_group_max, 1), (derived_average_count, 1), (derived_join, 1.5),
    (derived_group_total, 1),
    (union, 1.5), (union_join, 1), (intersect, 1.5), (intersect_join, 1.5), (except_group, 1),
    (except_join, 1.5),
    (case_label, 1.5), (window_rank, 1.5), (window_partition_average, 1),
    (window_running_total, 1), (cte_above_average_count, 1.5), (cte_top_per_group, 1.5),
    (cte_filtered_groups, 1.5),
)
