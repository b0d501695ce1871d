"""Using the customer data within its lawful basis (issue #18, modelling half): purchase import, RFM
segments, CLV from published models (BG/NBD, Gamma-Gamma), cross-sell and the fairness report.

crm never imports consent: who may be modelled is asked of the use rule registered by consent
(crm.analytics.eligibility), and every computation takes the eligible customers as an argument.
"""
