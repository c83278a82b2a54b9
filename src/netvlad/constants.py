"""The paper's distances, named once (Arandjelović et al., CVPR 2016, Sec. 4 and 5.1).

Imported by the library and by the CLI's argument defaults; this module imports nothing, so the CLI can read it
without loading torch.
"""

# "Potential positives" are database images within 10 m of the query's GPS position (Sec. 4).
POSITIVE_RADIUS_M = 10.0
# "Definite negatives" are farther than 25 m from the query (Sec. 4) ...
NEGATIVE_RADIUS_M = 25.0
# ... and at test time a query counts as correctly localised if a retrieved image lies within 25 m (Sec. 5.1).
EVAL_RADIUS_M = 25.0
