"""The Streamlit app (``streamlit run app/main.py``): pages, figure builders, URL state and controls."""
